// Runs one request in a fresh Node.js process: see protocol.go. Standard
// input is the request as JSON; file descriptor 3 takes the report: the
// value main returned, and the peak memory.
const fs = require('fs');
const path = require('path');
const Module = require('module');

const req = JSON.parse(fs.readFileSync(0, 'utf8'));
fs.mkdirSync('artifacts', { recursive: true });
const out = {};
function report() {
  out.max_rss_kb = process.resourceUsage().maxRSS;
  try { fs.writeSync(3, JSON.stringify(out)); } catch (e) {}
}
process.on('exit', report);

const filename = path.join(process.cwd(), 'main.js');
const mod = new Module(filename, null);
mod.filename = filename;
mod.paths = Module._nodeModulePaths(process.cwd());
let source = (req.preload ? req.preload + '\n' : '') + req.code;
if (req.mode === 'main') source += '\n\nmodule.exports = { main };';
mod._compile(source, filename);
if (req.mode === 'main') {
  const main = mod.exports.main;
  if (typeof main !== 'function') {
    console.error('Error: main is not a function');
    process.exit(1);
  }
  Promise.resolve()
    .then(() => main(req.arguments || {}))
    .then((value) => {
      if (typeof value === 'undefined') {
        console.error('Error: main() must return a value. Use null for an empty result.');
        process.exitCode = 1;
        return;
      }
      const result = { present: true, value, type: 'json' };
      if (typeof JSON.stringify(result) === 'undefined') {
        console.error('Error: main() returned a non-JSON-serializable value.');
        process.exitCode = 1;
        return;
      }
      out.result = result;
    })
    .catch((err) => {
      console.error('Error in main function:', err);
      process.exitCode = 1;
    });
}
