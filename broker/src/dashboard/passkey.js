// The dashboard's only script: asks the browser for a passkey (WebAuthn) and
// posts its answer with the surrounding form. Everything else on the
// dashboard works without script. Served as /static/passkey.js, the one
// script the Content-Security-Policy allows.
(() => {
  'use strict';
  const b64u = (buf) =>
    btoa(String.fromCharCode(...new Uint8Array(buf)))
      .replace(/\+/g, '-')
      .replace(/\//g, '_')
      .replace(/=+$/, '');
  const bytes = (s) =>
    Uint8Array.from(atob(s.replace(/-/g, '+').replace(/_/g, '/')), (c) => c.charCodeAt(0));
  const credentials = (s) => (s ? s.split(',') : []).map((id) => ({ type: 'public-key', id: bytes(id) }));

  async function answer(box) {
    const d = box.dataset;
    const form = box.closest('form');
    const set = (name, value) => {
      form.elements[name].value = value;
    };
    if (d.passkey === 'create') {
      const c = await navigator.credentials.create({
        publicKey: {
          challenge: bytes(d.challenge),
          rp: { id: d.rpId, name: 'Agent access' },
          user: { id: bytes(d.userId), name: d.userName, displayName: d.userName },
          pubKeyCredParams: [
            { type: 'public-key', alg: -8 },
            { type: 'public-key', alg: -7 },
          ],
          excludeCredentials: credentials(d.credentials),
          authenticatorSelection: { residentKey: 'discouraged', userVerification: 'preferred' },
          attestation: 'none',
          timeout: 110000,
        },
      });
      set('pk_id', c.id);
      set('pk_client_data', b64u(c.response.clientDataJSON));
      set('pk_auth_data', b64u(c.response.getAuthenticatorData()));
      set('pk_public_key', b64u(c.response.getPublicKey()));
      set('pk_alg', String(c.response.getPublicKeyAlgorithm()));
    } else {
      const c = await navigator.credentials.get({
        publicKey: {
          challenge: bytes(d.challenge),
          rpId: d.rpId,
          allowCredentials: credentials(d.credentials),
          userVerification: 'preferred',
          timeout: 110000,
        },
      });
      set('pk_id', c.id);
      set('pk_client_data', b64u(c.response.clientDataJSON));
      set('pk_auth_data', b64u(c.response.authenticatorData));
      set('pk_signature', b64u(c.response.signature));
    }
    const submitter = d.submitter ? form.querySelector(d.submitter) : null;
    if (submitter) form.requestSubmit(submitter);
    else form.requestSubmit();
  }

  for (const box of document.querySelectorAll('[data-passkey]')) {
    const go = box.querySelector('[data-passkey-go]');
    if (!go || !window.PublicKeyCredential) continue;
    go.hidden = false;
    go.addEventListener('click', () => {
      answer(box).catch((e) => {
        const out = box.querySelector('[data-passkey-error]');
        out.textContent = `No passkey was used (${e.name}). Try again, or use a code.`;
        out.hidden = false;
      });
    });
  }
})();
