#!/usr/bin/env node
// Kinesis API comparison: the same AWS SDK for JavaScript v3 load against several
// Kinesis-compatible servers (runnel's --kinesis-listen endpoint, kinesalite, kinesis-mock).
// See bench/README.md ("Kinesis API comparison") for what each row measures.
//
// One coordinator process (this file, no --worker) and two worker processes (this file with
// --worker, forked over IPC). All load comes from the workers so that the SDK's own CPU cost
// (about 8 ms per 1,000 records) is spread over two processes and reported beside each figure.
// Timestamps are process.hrtime (CLOCK_MONOTONIC), which is the same clock in every process
// on the machine, so a put in one worker and a get in the other can be compared directly.
//
// Usage: node bench.mjs --target NAME,URL,HANDLER[,PID] [--target ...] [options]
//   HANDLER: "default" = the SDK's default request handler, unconfigured (for Kinesis: HTTP/2
//            cleartext, one isolated session per request), or "http1" = NodeHttpHandler with
//            a keep-alive agent (HTTP/1.1). PID: the server's pid, for its CPU time (/proc).
//   --reps N (3)  --seconds S (5, per timed phase)  --put-count N (1000, sequential PutRecord)
//   --rate R (100, put->get records/s)  --poll-ms MS (0, pause between GetRecords polls)
//   --phases ingest,read,put,latency  --json FILE (raw results)  --report FILE (print the
//            table of an earlier --json FILE again, without running anything)
//   --ratio-of NAME[,NAME] (targets compared with the others in ratio columns; default: every
//            target whose name starts with "runnel")

import { fork } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import {
  KinesisClient,
  CreateStreamCommand,
  DeleteStreamCommand,
  DescribeStreamSummaryCommand,
  ListShardsCommand,
  PutRecordsCommand,
  PutRecordCommand,
  GetShardIteratorCommand,
  GetRecordsCommand,
} from '@aws-sdk/client-kinesis';
import { NodeHttpHandler } from '@smithy/node-http-handler';

const SHARDS = 4;
const RECORD_BYTES = 100;
const BATCH = 500;
const PRODUCERS_PER_WORKER = 4;
const WORKERS = 2;
const READ_LIMIT = 10000;
const MAGIC = 0x524e4c42; // "RNLB": marks put->get latency records

// The SDK warns on stderr, once per process, that releases after January 2027 need Node 22.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

const nowNs = () => process.hrtime.bigint();
const nsToMs = (ns) => Number(ns) / 1e6;

function parseArgs(argv) {
  const opts = {
    targets: [],
    reps: 3,
    seconds: 5,
    putCount: 1000,
    rate: 100,
    pollMs: 0,
    phases: ['ingest', 'read', 'put', 'latency'],
    json: '',
    ratioOf: null,
    worker: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${a}: missing value`);
      return argv[++i];
    };
    const num = (name, min, max) => {
      const v = Number(next());
      if (!Number.isFinite(v) || v < min || v > max) {
        throw new Error(`${name}: '${argv[i]}' is not a number in [${min}, ${max}]`);
      }
      return v;
    };
    switch (a) {
      case '--worker': opts.worker = true; break;
      case '--target': {
        const [name, url, handler = 'default', pid] = next().split(',');
        if (!name || !/^https?:\/\//.test(url || '')) {
          throw new Error(`--target: '${argv[i]}' is not NAME,URL,HANDLER[,PID]`);
        }
        if (handler !== 'default' && handler !== 'http1') {
          throw new Error(`--target ${name}: handler '${handler}' is not 'default' or 'http1'`);
        }
        opts.targets.push({ name, url, handler, pid: pid ? Number(pid) : 0 });
        break;
      }
      case '--reps': opts.reps = num('--reps', 1, 50); break;
      case '--seconds': opts.seconds = num('--seconds', 0.5, 120); break;
      case '--put-count': opts.putCount = num('--put-count', 10, 1e6); break;
      case '--rate': opts.rate = num('--rate', 1, 10000); break;
      case '--poll-ms': opts.pollMs = num('--poll-ms', 0, 1000); break;
      case '--phases': {
        opts.phases = next().split(',');
        for (const p of opts.phases) {
          if (!['ingest', 'read', 'put', 'latency'].includes(p)) {
            throw new Error(`--phases: '${p}' is not one of ingest,read,put,latency`);
          }
        }
        if (opts.phases.includes('read') && !opts.phases.includes('ingest')) {
          throw new Error('--phases: read reads back what ingest put; add ingest');
        }
        break;
      }
      case '--json': opts.json = next(); break;
      case '--report': opts.report = next(); break;
      case '--ratio-of': opts.ratioOf = next().split(','); break;
      case '--help': case '-h':
        process.stdout.write(readFileSync(fileURLToPath(import.meta.url), 'utf8')
          .split('\n').slice(1).filter((l, i, a) => a.slice(0, i + 1).every((x) => x.startsWith('//')))
          .map((l) => l.replace(/^\/\/ ?/, '')).join('\n') + '\n');
        process.exit(0);
      default: throw new Error(`unknown option '${a}' (see --help)`);
    }
  }
  return opts;
}

// The SDK client as a user would build it. "default": no requestHandler at all (the Kinesis
// client's default is NodeHttp2Handler with disableConcurrentStreams, i.e. h2c prior knowledge and
// a fresh HTTP/2 session per request). "http1": what kinesalite and kinesis-mock need.
function makeClient(target, sockets) {
  const config = {
    endpoint: target.url,
    region: 'us-east-1',
    credentials: { accessKeyId: 'AKIDBENCH', secretAccessKey: 'bench-secret' },
  };
  if (target.handler === 'http1') {
    config.requestHandler = new NodeHttpHandler({
      httpAgent: new http.Agent({ keepAlive: true, maxSockets: sockets }),
      requestTimeout: 60000,
    });
  }
  return new KinesisClient(config);
}

function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

function median(values) {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

function cpuMs(start) {
  const d = process.cpuUsage(start);
  return (d.user + d.system) / 1000;
}

// Random 16-character partition keys, drawn from a pool made up front so that key generation
// does not add to the client's CPU in the timed phases.
const KEYS = Array.from({ length: 8192 }, () => randomBytes(12).toString('base64url'));
let keyIndex = 0;
function randomKey() {
  keyIndex = (keyIndex + 1) & 8191;
  return KEYS[keyIndex];
}

// ---------------------------------------------------------------------------------------------
// Worker side: one process, commands from the coordinator over IPC.

async function shardIds(client, stream) {
  const out = [];
  let token;
  do {
    const r = await client.send(new ListShardsCommand(token ? { NextToken: token } : { StreamName: stream }));
    for (const s of r.Shards) out.push(s.ShardId);
    token = r.NextToken;
  } while (token);
  return out;
}

// Ingest: PRODUCERS_PER_WORKER loops of PutRecords(500 x 100 bytes) until the deadline.
async function workerIngest(client, cmd, go) {
  const data = randomBytes(RECORD_BYTES);
  const deadline = go.start + BigInt(Math.round(cmd.seconds * 1e9));
  const perShard = {};
  const lat = [];
  let records = 0, failed = 0, errors = 0, lastError = '';
  const producer = async () => {
    while (nowNs() < deadline) {
      const entries = [];
      for (let i = 0; i < BATCH; i++) entries.push({ Data: data, PartitionKey: randomKey() });
      const t0 = nowNs();
      try {
        const r = await client.send(new PutRecordsCommand({ StreamName: cmd.stream, Records: entries }));
        lat.push(nsToMs(nowNs() - t0));
        failed += r.FailedRecordCount || 0;
        for (const rec of r.Records) {
          if (rec.ShardId) {
            records++;
            perShard[rec.ShardId] = (perShard[rec.ShardId] || 0) + 1;
          }
        }
      } catch (e) {
        errors++;
        lastError = `${e.name}: ${e.message}`.slice(0, 200);
        if (errors > 50) break;
      }
    }
  };
  await Promise.all(Array.from({ length: PRODUCERS_PER_WORKER }, producer));
  return { records, failed, errors, lastError, perShard, lat, end: nowNs() };
}

// Read: one reader per assigned shard, TRIM_HORIZON, GetRecords(limit 10,000) until it has read
// what ingest put on that shard (or the deadline).
async function workerRead(client, cmd, go, prepared) {
  // Three times the ingest window: reading back all of it is the point, but never unbounded.
  const deadline = go.start + BigInt(Math.round(3 * cmd.seconds * 1e9));
  let records = 0, calls = 0, errors = 0, lastError = '', incomplete = 0;
  const reader = async ({ shard, iterator }) => {
    const want = cmd.expect[shard] || 0;
    let got = 0;
    while (iterator && got < want && nowNs() < deadline) {
      try {
        const r = await client.send(new GetRecordsCommand({ ShardIterator: iterator, Limit: READ_LIMIT }));
        calls++;
        got += r.Records.length;
        iterator = r.NextShardIterator;
      } catch (e) {
        errors++;
        lastError = `${e.name}: ${e.message}`.slice(0, 200);
        if (errors > 50) break;
      }
    }
    if (got < want) incomplete++;
    records += got;
  };
  await Promise.all(prepared.map(reader));
  return { records, calls, errors, lastError, incomplete, end: nowNs() };
}

async function prepareRead(client, cmd) {
  const out = [];
  for (const shard of cmd.shards) {
    const r = await client.send(new GetShardIteratorCommand({
      StreamName: cmd.stream, ShardId: shard, ShardIteratorType: 'TRIM_HORIZON' }));
    out.push({ shard, iterator: r.ShardIterator });
  }
  return out;
}

// Sequential PutRecord: one call at a time, put-count calls or the deadline.
async function workerPut(client, cmd, go) {
  const deadline = go.start + BigInt(Math.round(cmd.seconds * 1e9));
  const data = randomBytes(RECORD_BYTES);
  const lat = [];
  let errors = 0, lastError = '';
  while (lat.length < cmd.count && nowNs() < deadline) {
    const t0 = nowNs();
    try {
      await client.send(new PutRecordCommand({ StreamName: cmd.stream, Data: data, PartitionKey: randomKey() }));
      lat.push(nsToMs(nowNs() - t0));
    } catch (e) {
      errors++;
      lastError = `${e.name}: ${e.message}`.slice(0, 200);
      if (errors > 50) break;
    }
  }
  return { lat, errors, lastError, end: nowNs() };
}

// put->get, producer side: PutRecord of one record every 1/rate s, each carrying its send time.
// At most one put in flight: a tick that finds the previous put unanswered is skipped (counted),
// so a slow server shows as fewer samples, not as latency queued up in this client.
async function workerLatencyProducer(client, cmd, go) {
  const deadline = go.start + BigInt(Math.round(cmd.seconds * 1e9));
  const period = 1e9 / cmd.rate;
  let sent = 0, skipped = 0, errors = 0, lastError = '', inFlight = false, tick = 0;
  const pending = [];
  await new Promise((resolve) => {
    const step = () => {
      const now = nowNs();
      if (now >= deadline) return resolve();
      if (inFlight) {
        skipped++;
      } else {
        const data = Buffer.alloc(RECORD_BYTES);
        data.writeUInt32BE(MAGIC, 0);
        const t0 = nowNs();
        data.writeBigUInt64BE(t0, 4);
        inFlight = true;
        sent++;
        pending.push(client.send(new PutRecordCommand({ StreamName: cmd.stream, Data: data, PartitionKey: randomKey() }))
          .catch((e) => { errors++; lastError = `${e.name}: ${e.message}`.slice(0, 200); })
          .finally(() => { inFlight = false; }));
      }
      tick++;
      const next = go.start + BigInt(Math.round(tick * period));
      setTimeout(step, Math.max(0, nsToMs(next - nowNs())));
    };
    step();
  });
  await Promise.all(pending);
  return { sent, skipped, errors, lastError, end: nowNs() };
}

async function prepareLatencyConsumer(client, cmd) {
  const out = [];
  for (const shard of await shardIds(client, cmd.stream)) {
    const r = await client.send(new GetShardIteratorCommand({
      StreamName: cmd.stream, ShardId: shard, ShardIteratorType: 'LATEST' }));
    out.push({ shard, iterator: r.ShardIterator });
  }
  return out;
}

// put->get, consumer side: one poller per shard, GetRecords back to back (poll-ms pause after an
// empty answer), until the producer's deadline plus a grace second.
async function workerLatencyConsumer(client, cmd, go, prepared) {
  const stop = go.start + BigInt(Math.round((cmd.seconds + 1) * 1e9));
  const warm = go.start + 500000000n; // the first 0.5 s is not counted
  const lat = [];
  let polls = 0, errors = 0, lastError = '', received = 0;
  const poller = async ({ iterator }) => {
    while (iterator && nowNs() < stop) {
      try {
        const r = await client.send(new GetRecordsCommand({ ShardIterator: iterator, Limit: READ_LIMIT }));
        const t1 = nowNs();
        polls++;
        iterator = r.NextShardIterator;
        for (const rec of r.Records) {
          const d = Buffer.from(rec.Data);
          if (d.length >= 12 && d.readUInt32BE(0) === MAGIC) {
            received++;
            const t0 = d.readBigUInt64BE(4);
            if (t0 >= warm) lat.push(nsToMs(t1 - t0));
          }
        }
        if (r.Records.length === 0 && cmd.pollMs > 0) {
          await new Promise((res) => setTimeout(res, cmd.pollMs));
        }
      } catch (e) {
        errors++;
        lastError = `${e.name}: ${e.message}`.slice(0, 200);
        if (errors > 50) break;
      }
    }
  };
  await Promise.all(prepared.map(poller));
  return { lat, polls, received, errors, lastError, end: nowNs() };
}

async function workerMain() {
  let prepared = null, client = null, cmd = null;
  const reply = (m) => process.send(m);
  process.on('message', async (msg) => {
    try {
      if (msg.type === 'prepare') {
        cmd = msg.cmd;
        client = makeClient(cmd.target, PRODUCERS_PER_WORKER * 2);
        // Warm every connection the phase will use (one per concurrent call for HTTP/1.1).
        await Promise.all(Array.from({ length: PRODUCERS_PER_WORKER }, () =>
          client.send(new ListShardsCommand({ StreamName: cmd.stream }))));
        prepared = null;
        if (cmd.phase === 'read') prepared = await prepareRead(client, cmd);
        if (cmd.phase === 'latency-consumer') prepared = await prepareLatencyConsumer(client, cmd);
        reply({ type: 'ready' });
      } else if (msg.type === 'go') {
        const go = { start: nowNs() };
        const cpu0 = process.cpuUsage();
        let r;
        switch (cmd.phase) {
          case 'ingest': r = await workerIngest(client, cmd, go); break;
          case 'read': r = await workerRead(client, cmd, go, prepared); break;
          case 'put': r = await workerPut(client, cmd, go); break;
          case 'latency-producer': r = await workerLatencyProducer(client, cmd, go); break;
          case 'latency-consumer': r = await workerLatencyConsumer(client, cmd, go, prepared); break;
          default: throw new Error(`unknown phase ${cmd.phase}`);
        }
        r.cpuMs = cpuMs(cpu0);
        r.start = go.start.toString();
        r.end = r.end.toString();
        client.destroy();
        client = null;
        reply({ type: 'done', result: r });
      } else if (msg.type === 'exit') {
        process.exit(0);
      }
    } catch (e) {
      reply({ type: 'error', error: `${e.name}: ${e.message}` });
    }
  });
  process.on('disconnect', () => process.exit(0)); // coordinator gone: never linger
  reply({ type: 'up' });
}

// ---------------------------------------------------------------------------------------------
// Coordinator side.

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    }),
  ]);
}

class Worker {
  constructor(index) {
    this.index = index;
    this.child = fork(fileURLToPath(import.meta.url), ['--worker'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.waiters = [];
    this.child.on('message', (m) => {
      const w = this.waiters.shift();
      if (!w) return;
      if (m.type === 'error') w.reject(new Error(`worker ${index}: ${m.error}`));
      else if (m.type !== w.type) w.reject(new Error(`worker ${index}: expected ${w.type}, got ${m.type}`));
      else w.resolve(m);
    });
    this.child.on('exit', (code, signal) => {
      for (const w of this.waiters.splice(0)) {
        w.reject(new Error(`worker ${index} exited (code ${code}, signal ${signal})`));
      }
    });
  }
  expect(type, ms) {
    return withTimeout(new Promise((resolve, reject) => this.waiters.push({ type, resolve, reject })),
      ms, `worker ${this.index} ${type}`);
  }
  send(m) { this.child.send(m); }
  kill() { if (this.child.exitCode === null) this.child.kill('SIGKILL'); }
}

// Runs one phase on the given workers: prepare all, then "go" to all at once, collect results.
async function runPhase(workers, cmds, seconds) {
  const ready = workers.map((w) => w.expect('ready', 60000));
  workers.forEach((w, i) => w.send({ type: 'prepare', cmd: cmds[i] }));
  await Promise.all(ready);
  // Generous: a slow server may take a whole PutRecords round (seconds) past the deadline.
  const done = workers.map((w) => w.expect('done', (seconds + 120) * 1000));
  workers.forEach((w) => w.send({ type: 'go' }));
  const results = (await Promise.all(done)).map((m) => m.result);
  for (const r of results) { r.start = BigInt(r.start); r.end = BigInt(r.end); }
  return results;
}

function serverCpuMs(pid) {
  if (!pid) return NaN;
  try {
    // Fields after the ")" of comm: state is field 3; utime 14, stime 15 (clock ticks, 100/s).
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * 10; // 100 ticks/s on Linux: 10 ms a tick
  } catch {
    return NaN;
  }
}

async function adminClient(target) {
  return makeClient(target, 4);
}

async function createStream(client, name) {
  await client.send(new CreateStreamCommand({ StreamName: name, ShardCount: SHARDS }));
  const deadline = Date.now() + 60000;
  for (;;) {
    const r = await client.send(new DescribeStreamSummaryCommand({ StreamName: name }));
    if (r.StreamDescriptionSummary.StreamStatus === 'ACTIVE') return;
    if (Date.now() > deadline) throw new Error(`stream ${name} not ACTIVE after 60 s`);
    await new Promise((res) => setTimeout(res, 20));
  }
}

function errorsOf(results) {
  const n = results.reduce((a, r) => a + (r.errors || 0), 0);
  const last = results.map((r) => r.lastError).filter(Boolean)[0] || '';
  return { n, last };
}

// One repetition of every phase against one target. Returns figures (NaN where not measured).
async function runTarget(opts, target, rep, workers) {
  const fig = {};
  const notes = [];
  const admin = await adminClient(target);
  const stream = `kbench-${process.pid}-${rep}-${target.name}`;
  const latStream = `${stream}-lat`;
  try {
    await createStream(admin, stream);
    const shards = await shardIds(admin, stream);
    const base = { target, stream, seconds: opts.seconds };
    let srv0 = serverCpuMs(target.pid);

    if (opts.phases.includes('ingest')) {
      const rs = await runPhase(workers, workers.map(() => ({ ...base, phase: 'ingest' })), opts.seconds);
      const start = rs.reduce((a, r) => (r.start < a ? r.start : a), rs[0].start);
      const end = rs.reduce((a, r) => (r.end > a ? r.end : a), rs[0].end);
      const records = rs.reduce((a, r) => a + r.records, 0);
      const lat = rs.flatMap((r) => r.lat).sort((a, b) => a - b);
      fig.ingest = records / (nsToMs(end - start) / 1000);
      fig.ingestCallP50 = percentile(lat, 50);
      fig.ingestCallP99 = percentile(lat, 99);
      fig.ingestCpu = rs.map((r) => r.cpuMs);
      fig.ingestRecords = records;
      const srv1 = serverCpuMs(target.pid);
      fig.ingestServerCpu = srv1 - srv0;
      srv0 = srv1;
      const failed = rs.reduce((a, r) => a + r.failed, 0);
      const e = errorsOf(rs);
      if (failed) notes.push(`ingest: ${failed} records failed (FailedRecordCount)`);
      if (e.n) notes.push(`ingest: ${e.n} calls threw (${e.last})`);
      fig.expect = {};
      for (const r of rs) for (const [s, n] of Object.entries(r.perShard)) fig.expect[s] = (fig.expect[s] || 0) + n;
    }

    if (opts.phases.includes('read')) {
      const half = Math.ceil(shards.length / workers.length);
      const cmds = workers.map((_, i) => ({
        ...base, phase: 'read', shards: shards.slice(i * half, (i + 1) * half), expect: fig.expect }));
      const rs = await runPhase(workers, cmds, 3 * opts.seconds);
      const start = rs.reduce((a, r) => (r.start < a ? r.start : a), rs[0].start);
      const end = rs.reduce((a, r) => (r.end > a ? r.end : a), rs[0].end);
      const records = rs.reduce((a, r) => a + r.records, 0);
      fig.read = records / (nsToMs(end - start) / 1000);
      fig.readRecords = records;
      fig.readCpu = rs.map((r) => r.cpuMs);
      const srv1 = serverCpuMs(target.pid);
      fig.readServerCpu = srv1 - srv0;
      srv0 = srv1;
      const incomplete = rs.reduce((a, r) => a + r.incomplete, 0);
      const e = errorsOf(rs);
      if (incomplete) notes.push(`read: ${incomplete} shard(s) not read to the end within ${3 * opts.seconds} s (${records} of ${fig.ingestRecords} records)`);
      if (e.n) notes.push(`read: ${e.n} calls threw (${e.last})`);
    }

    if (opts.phases.includes('put')) {
      // Worker 0 puts; worker 1 idles (so its CPU shows the idle baseline).
      const cmds = workers.map((_, i) => (i === 0
        ? { ...base, phase: 'put', count: opts.putCount }
        : { ...base, phase: 'put', count: 0 }));
      const rs = await runPhase(workers, cmds, opts.seconds);
      const lat = rs[0].lat.sort((a, b) => a - b);
      fig.putP50 = percentile(lat, 50);
      fig.putP99 = percentile(lat, 99);
      fig.putCount = lat.length;
      fig.putCpu = rs.map((r) => r.cpuMs);
      const srv1 = serverCpuMs(target.pid);
      fig.putServerCpu = srv1 - srv0;
      srv0 = srv1;
      const e = errorsOf(rs);
      if (e.n) notes.push(`put: ${e.n} calls threw (${e.last})`);
    }

    if (opts.phases.includes('latency')) {
      await createStream(admin, latStream);
      const lbase = { ...base, stream: latStream, rate: opts.rate, pollMs: opts.pollMs };
      // The consumer worker gets its LATEST iterators in "prepare", before the producer starts.
      const rs = await runPhase(workers,
        [{ ...lbase, phase: 'latency-producer' }, { ...lbase, phase: 'latency-consumer' }], opts.seconds);
      const [p, c] = rs;
      const lat = c.lat.sort((a, b) => a - b);
      fig.e2eP50 = percentile(lat, 50);
      fig.e2eP99 = percentile(lat, 99);
      fig.e2eSamples = lat.length;
      fig.e2ePollsPerS = c.polls / (nsToMs(c.end - c.start) / 1000);
      fig.e2eCpu = rs.map((r) => r.cpuMs);
      const srv1 = serverCpuMs(target.pid);
      fig.e2eServerCpu = srv1 - srv0;
      srv0 = srv1;
      if (p.skipped) notes.push(`put->get: ${p.skipped} of ${p.sent + p.skipped} paced puts skipped (previous put still unanswered)`);
      if (c.received < p.sent - p.errors) notes.push(`put->get: ${p.sent - p.errors - c.received} of ${p.sent} puts never read back`);
      const e = errorsOf(rs);
      if (e.n) notes.push(`put->get: ${e.n} calls threw (${e.last})`);
    }
  } finally {
    for (const s of [stream, latStream]) {
      try { await admin.send(new DeleteStreamCommand({ StreamName: s })); } catch { /* may not exist */ }
    }
    admin.destroy();
  }
  return { fig, notes };
}

const fmtRate = (v) => (Number.isFinite(v) ? Math.round(v).toLocaleString('en-US') : '—');
const fmtMs = (v) => (Number.isFinite(v) ? (v < 10 ? v.toFixed(2) : v.toFixed(1)) : '—');
const fmtRatio = (v) => (Number.isFinite(v) && v > 0
  ? (v >= 10 ? v.toFixed(0) : v >= 1 ? v.toFixed(1) : v >= 0.1 ? v.toFixed(2) : v.toPrecision(2)) : '—');
const fmtCpu = (a) => (Array.isArray(a) && a.every(Number.isFinite) ? a.map((x) => Math.round(x)).join(' + ') : '—');

function table(rows) {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => String(r[c]).length)));
  const line = (r) => `| ${r.map((x, c) => String(x).padEnd(widths[c])).join(' | ')} |`;
  return [line(rows[0]), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.slice(1).map(line)].join('\n');
}

function report(opts, results) {
  const names = opts.targets.map((t) => t.name);
  // Derived per repetition, then the median: server CPU per 1,000 records, which the client's
  // own CPU (two Node processes sharing the machine with the server) does not bound.
  for (const n of names) {
    for (const r of results[n]) {
      const f = r.fig;
      if (f.ingestRecords > 0) f.ingestServerCpuPer1k = f.ingestServerCpu / (f.ingestRecords / 1000);
      if (f.readRecords > 0) f.readServerCpuPer1k = f.readServerCpu / (f.readRecords / 1000);
    }
  }
  const med = (name, key) => median(results[name].map((r) => r.fig[key]));
  const medCpu = (name, key) => {
    const reps = results[name].map((r) => r.fig[key]).filter(Array.isArray);
    if (reps.length === 0) return null;
    return reps[0].map((_, i) => median(reps.map((r) => r[i])));
  };
  const runnels = opts.ratioOf ? names.filter((n) => opts.ratioOf.includes(n)) : names.filter((n) => n.startsWith('runnel'));
  const peers = names.filter((n) => !n.startsWith('runnel'));
  const rowsDef = [
    ['ingest, records/s (PutRecords 500 x 100 B, 2 procs x 4)', 'ingest', fmtRate],
    ['PutRecord sequential p50, ms', 'putP50', fmtMs],
    ['PutRecord sequential p99, ms', 'putP99', fmtMs],
    ['read, records/s (GetRecords limit 10,000)', 'read', fmtRate],
    ['put->get p50, ms', 'e2eP50', fmtMs],
    ['put->get p99, ms', 'e2eP99', fmtMs],
    ['server CPU per 1,000 records ingested, ms', 'ingestServerCpuPer1k', fmtMs],
    ['server CPU per 1,000 records read, ms', 'readServerCpuPer1k', fmtMs],
  ];
  const header = ['figure', ...names, ...runnels.flatMap((r) => peers.map((p) => `${r} / ${p}`))];
  const rows = [header];
  for (const [label, key, fmt] of rowsDef) {
    if (names.every((n) => !Number.isFinite(med(n, key)))) continue;
    const vals = names.map((n) => med(n, key));
    const ratios = runnels.flatMap((r) => peers.map((p) => fmtRatio(med(r, key) / med(p, key))));
    rows.push([label, ...vals.map(fmt), ...ratios]);
  }
  const out = [];
  out.push(`Median of ${opts.reps} repetition(s); ratio = runnel / peer (above 1 is better for records/s, below 1 is better for ms).`);
  out.push('Server CPU from /proc/PID/stat (10 ms ticks) over the phase; the records/s rows are bounded by the clients\' CPU too.');
  out.push(table(rows));
  out.push('');
  out.push('CPU time during each phase, ms (median): client worker 1 + worker 2 / server');
  const cpuRows = [['phase', ...names]];
  for (const [label, key, srvKey] of [
    ['ingest', 'ingestCpu', 'ingestServerCpu'], ['read', 'readCpu', 'readServerCpu'],
    ['PutRecord sequential (worker 1 puts)', 'putCpu', 'putServerCpu'],
    ['put->get (worker 1 puts, 2 polls)', 'e2eCpu', 'e2eServerCpu']]) {
    if (names.every((n) => medCpu(n, key) === null)) continue;
    cpuRows.push([label, ...names.map((n) => {
      const s = med(n, srvKey);
      return `${fmtCpu(medCpu(n, key))} / ${Number.isFinite(s) ? Math.round(s) : '—'}`;
    })]);
  }
  out.push(table(cpuRows));
  out.push('');
  const per1k = (n, cpuKey, countKey) => {
    const reps = results[n].filter((r) => Array.isArray(r.fig[cpuKey]) && r.fig[countKey] > 0);
    return median(reps.map((r) => r.fig[cpuKey].reduce((a, b) => a + b, 0) / (r.fig[countKey] / 1000)));
  };
  out.push('Details (median):');
  for (const n of names) {
    const parts = [];
    const has = (k) => Number.isFinite(med(n, k));
    if (has('ingest')) {
      parts.push(`ingest ${fmtRate(med(n, 'ingestRecords'))} records, PutRecords call p50/p99 ` +
        `${fmtMs(med(n, 'ingestCallP50'))}/${fmtMs(med(n, 'ingestCallP99'))} ms, client CPU ` +
        `${fmtMs(per1k(n, 'ingestCpu', 'ingestRecords'))} ms per 1,000 records`);
    }
    if (has('read')) {
      parts.push(`read ${fmtRate(med(n, 'readRecords'))} records, client CPU ` +
        `${fmtMs(per1k(n, 'readCpu', 'readRecords'))} ms per 1,000`);
    }
    if (has('putP50')) parts.push(`${fmtRate(med(n, 'putCount'))} sequential PutRecord calls`);
    if (has('e2eP50')) {
      parts.push(`put->get ${fmtRate(med(n, 'e2eSamples'))} samples at ${fmtRate(med(n, 'e2ePollsPerS'))} GetRecords polls/s`);
    }
    out.push(`  ${n}: ${parts.join('; ') || 'no figures'}`);
  }
  out.push('Clients: ' + opts.targets.map((t) => `${t.name}: ${t.handler === 'default'
    ? 'the SDK\'s default handler, unconfigured (HTTP/2 cleartext, a new connection per request)'
    : 'NodeHttpHandler with a keep-alive http.Agent (HTTP/1.1)' +
      (t.name.startsWith('runnel') ? '' : ', since the default h2c client fails on it')}`).join('; ') + '.');
  out.push(`put->get: PutRecord at ${opts.rate}/s (at most one in flight) from worker 1; worker 2 polls GetRecords on every shard back to back` +
    (opts.pollMs ? `, ${opts.pollMs} ms pause after an empty answer` : ' with no pause') +
    '; latency = GetRecords answer parsed - PutRecord call started; first 0.5 s not counted.');
  const notes = [];
  for (const n of names) {
    results[n].forEach((r, i) => r.notes.forEach((x) => notes.push(`${n} rep ${i + 1}: ${x}`)));
  }
  if (notes.length) out.push('Notes:\n  ' + notes.join('\n  '));
  return out.join('\n');
}

async function coordinatorMain(opts) {
  if (opts.targets.length === 0) throw new Error('no --target given (see --help)');
  const workers = Array.from({ length: WORKERS }, (_, i) => new Worker(i + 1));
  const kill = () => workers.forEach((w) => w.kill());
  process.on('exit', kill);
  for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => { kill(); process.exit(130); });
  await Promise.all(workers.map((w) => w.expect('up', 30000)));
  const results = Object.fromEntries(opts.targets.map((t) => [t.name, []]));
  const failed = new Set();
  // Repetitions interleave the targets, so slow drift in the machine's load hits all of them.
  for (let rep = 1; rep <= opts.reps; rep++) {
    for (const target of opts.targets) {
      if (failed.has(target.name)) continue;
      const t0 = Date.now();
      try {
        const r = await runTarget(opts, target, rep, workers);
        results[target.name].push(r);
        process.stderr.write(`rep ${rep} ${target.name}: ingest ${fmtRate(r.fig.ingest)}/s, put p50 ${fmtMs(r.fig.putP50)} ms, ` +
          `read ${fmtRate(r.fig.read)}/s, put->get p50/p99 ${fmtMs(r.fig.e2eP50)}/${fmtMs(r.fig.e2eP99)} ms ` +
          `(${((Date.now() - t0) / 1000).toFixed(1)} s)${r.notes.length ? ' [' + r.notes.join('; ') + ']' : ''}\n`);
      } catch (e) {
        // A target that cannot run (e.g. a failing protocol) is reported, the others go on.
        failed.add(target.name);
        results[target.name].push({ fig: {}, notes: [`FAILED: ${e.name}: ${e.message}`.slice(0, 300)] });
        process.stderr.write(`rep ${rep} ${target.name}: FAILED: ${e.message}\n`);
        // A worker stuck in a phase would poison the next target: replace both.
        for (let i = 0; i < workers.length; i++) {
          workers[i].kill();
          workers[i] = new Worker(i + 1);
        }
        await Promise.all(workers.map((w) => w.expect('up', 30000)));
      }
    }
  }
  for (const w of workers) w.send({ type: 'exit' });
  const text = report(opts, results);
  console.log(text);
  if (opts.json) {
    writeFileSync(opts.json, JSON.stringify({ opts, results }, (k, v) => (typeof v === 'bigint' ? v.toString() : v), 2));
  }
}

const opts = parseArgs(process.argv.slice(2));
if (opts.report) {
  const saved = JSON.parse(readFileSync(opts.report, 'utf8'));
  console.log(report({ ...saved.opts, ratioOf: opts.ratioOf || saved.opts.ratioOf }, saved.results));
} else if (opts.worker) {
  workerMain();
} else {
  coordinatorMain(opts).catch((e) => {
    console.error(`bench.mjs: ${e.message}`);
    process.exit(1);
  });
}
