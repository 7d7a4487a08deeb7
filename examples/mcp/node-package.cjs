'use strict';
// Where the Node package is: installed (`npm install ./bindings-node` puts it in
// node_modules), else the repository's bindings-node folder, built in place.
const path = require('node:path');

function resolvePackage() {
  try {
    return path.dirname(require.resolve('protonpass-agent/package.json'));
  } catch {
    return path.resolve(__dirname, '..', '..', 'bindings-node');
  }
}

module.exports = resolvePackage();
