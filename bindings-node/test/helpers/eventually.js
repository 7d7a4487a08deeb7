'use strict';

/** Poll `check` until it holds, for at most `ms` (events arrive asynchronously). */
async function eventually(check, ms = 10000) {
  const end = Date.now() + ms;
  for (;;) {
    const r = await check();
    if (r || Date.now() > end) return r;
    await new Promise((res) => setTimeout(res, 50));
  }
}

module.exports = { eventually };
