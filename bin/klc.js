#!/usr/bin/env node
'use strict';
const path = require('node:path');
const fs = require('node:fs');
const bundle = path.join(__dirname, '..', 'dist', 'cli.js');
if (!fs.existsSync(bundle)) {
  process.stderr.write(`klc: ${bundle} is missing. Build it first: npm run build\n`);
  process.exit(1);
}
require(bundle);
