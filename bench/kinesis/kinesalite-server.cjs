#!/usr/bin/env node
// Starts kinesalite (in-memory) on loopback only: its own CLI listens on every interface.
// Usage: node kinesalite-server.cjs PORT  (0 picks a free one). Prints "listening PORT".
// Streams become ACTIVE at once (createStreamMs 0) so stream setup does not count.
const kinesalite = require('kinesalite');
const port = Number(process.argv[2] || 0);
const server = kinesalite({ createStreamMs: 0, deleteStreamMs: 0, updateStreamMs: 0, shardLimit: 10000 });
server.listen(port, '127.0.0.1', () => console.log(`listening ${server.address().port}`));
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
