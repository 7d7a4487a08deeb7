// ES module entry point: the same objects as the CommonJS one, under the
// names Node detects in `index.js`.
export * from './index.js';
export { default } from './index.js';
