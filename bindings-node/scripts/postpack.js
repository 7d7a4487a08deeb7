'use strict';
// After `npm pack`: remove `standalone/` (generated for the tarball only).
const fs = require('node:fs');
const path = require('node:path');

fs.rmSync(path.resolve(__dirname, '..', 'standalone'), { recursive: true, force: true });
