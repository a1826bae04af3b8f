// The Node this project runs on: package.json's "engines" (>=24). `npm ci` installs Node 24 itself on Linux x64 and
// arm64 (the node-linux-* optional dependencies), and npm scripts put it first on PATH; elsewhere the machine's own
// Node has to be that new. Every program and vitest.config.ts import this first, so an older Node stops here with
// one line instead of failing later (better-sqlite3's prebuilt addon crashes Node 20 outright).
export const NODE_MAJOR = 24;

if (Number(process.versions.node.split('.')[0]) < NODE_MAJOR) {
  process.stderr.write(
    `curbside-key needs Node ${NODE_MAJOR} or newer, not ${process.version} (${process.execPath}): ` +
      `run it through npm after npm ci (npm start, npm test, npm run …), or install Node ${NODE_MAJOR}\n`,
  );
  process.exit(1);
}
