// Drives runnel's Kinesis endpoint with the AWS SDK for JavaScript v3, exactly as an
// application would: KinesisClient with its default request handler (HTTP/2 with prior
// knowledge against an http:// endpoint), only the endpoint, a region and dummy credentials set.
//
//   node sdk_test.js http://127.0.0.1:PORT
//
// Exits 0 when every check passed; otherwise prints the failed check and exits 1.
'use strict';

const assert = require('node:assert/strict');
const {
  KinesisClient,
  CreateStreamCommand,
  DeleteStreamCommand,
  ListStreamsCommand,
  DescribeStreamCommand,
  DescribeStreamSummaryCommand,
  ListShardsCommand,
  PutRecordCommand,
  PutRecordsCommand,
  GetShardIteratorCommand,
  GetRecordsCommand,
  IncreaseStreamRetentionPeriodCommand,
  DecreaseStreamRetentionPeriodCommand,
  RegisterStreamConsumerCommand,
  DescribeStreamConsumerCommand,
  ListStreamConsumersCommand,
  DeregisterStreamConsumerCommand,
  SubscribeToShardCommand,
  AddTagsToStreamCommand,
  ListTagsForStreamCommand,
  RemoveTagsFromStreamCommand,
  DescribeLimitsCommand,
  EnableEnhancedMonitoringCommand,
} = require('@aws-sdk/client-kinesis');

const endpoint = process.argv[2] || process.env.RUNNEL_KINESIS_ENDPOINT;
if (!endpoint) {
  console.error('usage: node sdk_test.js http://HOST:PORT');
  process.exit(2);
}

const client = new KinesisClient({
  endpoint,
  region: 'eu-west-3', // any region works
  credentials: { accessKeyId: 'dummy', secretAccessKey: 'dummy' },
  maxAttempts: 1, // a retry would hide a server error
});

let checks = 0;
function check(condition, what) {
  assert.ok(condition, what);
  checks++;
}

async function expectError(name, command, what) {
  try {
    await client.send(command);
  } catch (e) {
    assert.equal(e.name, name, `${what}: expected ${name}, got ${e.name}: ${e.message}`);
    assert.equal(e.$metadata.httpStatusCode, 400, `${what}: HTTP status`);
    checks++;
    return e;
  }
  assert.fail(`${what}: expected ${name}, but the call succeeded`);
}

const text = (bytes) => Buffer.from(bytes).toString('utf8');

async function readAll(iterator) {
  const records = [];
  for (let i = 0; i < 1000 && iterator; i++) {
    const out = await client.send(new GetRecordsCommand({ ShardIterator: iterator }));
    records.push(...out.Records);
    iterator = out.NextShardIterator;
    if (out.Records.length === 0 && out.MillisBehindLatest === 0) break;
  }
  return records;
}

async function iterator(stream, shardId, type, extra = {}) {
  const out = await client.send(
    new GetShardIteratorCommand({ StreamName: stream, ShardId: shardId, ShardIteratorType: type, ...extra }),
  );
  check(typeof out.ShardIterator === 'string' && out.ShardIterator.length > 0, `${type} iterator`);
  return out.ShardIterator;
}

async function main() {
  const stream = `js-sdk-${process.pid}-${Date.now()}`;
  const shardCount = 3;

  // ---- Control plane.
  await client.send(new CreateStreamCommand({ StreamName: stream, ShardCount: shardCount }));
  const summary = (await client.send(new DescribeStreamSummaryCommand({ StreamName: stream })))
    .StreamDescriptionSummary;
  check(summary.StreamStatus === 'ACTIVE', 'stream ACTIVE');
  check(summary.OpenShardCount === shardCount, 'OpenShardCount');
  check(summary.StreamCreationTimestamp instanceof Date, 'creation timestamp parsed as a Date');
  check(Math.abs(summary.StreamCreationTimestamp - Date.now()) < 60_000, 'creation timestamp is now');
  const arn = summary.StreamARN;
  check(arn.endsWith(`:stream/${stream}`), 'StreamARN');
  const byArn = await client.send(new DescribeStreamSummaryCommand({ StreamARN: arn }));
  check(byArn.StreamDescriptionSummary.StreamName === stream, 'StreamARN accepted for StreamName');

  const listed = await client.send(new ListStreamsCommand({}));
  check(listed.StreamNames.includes(stream), 'ListStreams names the stream');

  // ListShards, one shard per page.
  const shards = [];
  let page = await client.send(new ListShardsCommand({ StreamName: stream, MaxResults: 1 }));
  shards.push(...page.Shards);
  while (page.NextToken) {
    page = await client.send(new ListShardsCommand({ NextToken: page.NextToken, MaxResults: 1 }));
    check(page.Shards.length <= 1, 'MaxResults respected');
    shards.push(...page.Shards);
  }
  check(shards.length === shardCount, `ListShards paged through ${shardCount} shards`);
  check(new Set(shards.map((s) => s.ShardId)).size === shardCount, 'distinct shard ids');
  const described = await client.send(new DescribeStreamCommand({ StreamName: stream }));
  check(described.StreamDescription.Shards.length === shardCount, 'DescribeStream shards');
  check(described.StreamDescription.HasMoreShards === false, 'DescribeStream HasMoreShards');
  const shard0 = shards[0].ShardId;

  // ---- Writes: single, then a large batch (500 x 10 KiB: a 5 MiB request, ~7 MB of JSON).
  const single = await client.send(
    new PutRecordCommand({ StreamName: stream, PartitionKey: 'k', ExplicitHashKey: '0', Data: Buffer.from('r1') }),
  );
  check(single.ShardId === shard0 && /^\d+$/.test(single.SequenceNumber), 'PutRecord answer');
  const second = await client.send(
    new PutRecordCommand({ StreamARN: arn, PartitionKey: 'k', ExplicitHashKey: '0', Data: Buffer.from('r2') }),
  );
  const third = await client.send(
    new PutRecordCommand({ StreamName: stream, PartitionKey: 'k', ExplicitHashKey: '0', Data: Buffer.from('r3') }),
  );
  check(BigInt(second.SequenceNumber) > BigInt(single.SequenceNumber), 'sequence numbers increase');

  const big = [];
  for (let i = 0; i < 500; i++) {
    const data = Buffer.alloc(10 * 1024, i % 251);
    data.write(`record-${i}`);
    big.push({ PartitionKey: `pk-${i}`, Data: data });
  }
  const put = await client.send(new PutRecordsCommand({ StreamName: stream, Records: big }));
  check(put.FailedRecordCount === 0, 'PutRecords 500 x 10 KiB: no failures');
  check(put.Records.length === 500 && put.Records.every((r) => r.SequenceNumber && r.ShardId), '500 results');

  // ---- Reads with each iterator type.
  const fromStart = await readAll(await iterator(stream, shard0, 'TRIM_HORIZON'));
  check(fromStart.length >= 3, 'TRIM_HORIZON reads the shard');
  check(['r1', 'r2', 'r3'].every((d, i) => text(fromStart[i].Data) === d), 'TRIM_HORIZON in order');
  check(fromStart[0].ApproximateArrivalTimestamp instanceof Date, 'arrival timestamp is a Date');
  check(fromStart[0].PartitionKey === 'k', 'partition key');

  const at = await client.send(new GetRecordsCommand({
    ShardIterator: await iterator(stream, shard0, 'AT_SEQUENCE_NUMBER', { StartingSequenceNumber: second.SequenceNumber }),
    Limit: 1,
  }));
  check(at.Records.length === 1 && text(at.Records[0].Data) === 'r2', 'AT_SEQUENCE_NUMBER');
  const after = await client.send(new GetRecordsCommand({
    ShardIterator: await iterator(stream, shard0, 'AFTER_SEQUENCE_NUMBER', { StartingSequenceNumber: second.SequenceNumber }),
    Limit: 1,
  }));
  check(after.Records.length === 1 && text(after.Records[0].Data) === 'r3', 'AFTER_SEQUENCE_NUMBER');

  const latest = await iterator(stream, shard0, 'LATEST');
  const empty = await client.send(new GetRecordsCommand({ ShardIterator: latest }));
  check(empty.Records.length === 0, 'LATEST starts empty');
  const fourth = await client.send(
    new PutRecordCommand({ StreamName: stream, PartitionKey: 'k', ExplicitHashKey: '0', Data: Buffer.from('r4') }),
  );
  const afterLatest = await client.send(new GetRecordsCommand({ ShardIterator: empty.NextShardIterator }));
  check(afterLatest.Records.length === 1 && text(afterLatest.Records[0].Data) === 'r4', 'LATEST sees a new record');

  const arrival = afterLatest.Records[0].ApproximateArrivalTimestamp;
  const byTime = await readAll(await iterator(stream, shard0, 'AT_TIMESTAMP', { Timestamp: arrival }));
  check(byTime.length >= 1 && byTime.every((r) => r.ApproximateArrivalTimestamp >= arrival), 'AT_TIMESTAMP skips older');
  check(byTime.some((r) => r.SequenceNumber === fourth.SequenceNumber), 'AT_TIMESTAMP includes the record');

  // Every record of the big batch comes back, bytes intact.
  let total = 0;
  const seen = new Map();
  for (const shard of shards) {
    for (const r of await readAll(await iterator(stream, shard.ShardId, 'TRIM_HORIZON'))) {
      if (r.PartitionKey.startsWith('pk-')) {
        total++;
        seen.set(r.PartitionKey, r.Data);
      }
    }
  }
  check(total === 500, `read back 500 batch records (got ${total})`);
  const sample = seen.get('pk-123');
  check(sample && sample.length === 10 * 1024 && text(sample.subarray(0, 10)) === 'record-123', 'bytes intact');

  // ---- Errors, with Kinesis's exception names.
  await expectError('ResourceNotFoundException', new DescribeStreamSummaryCommand({ StreamName: `${stream}-missing` }), 'unknown stream');
  await expectError('ResourceInUseException', new CreateStreamCommand({ StreamName: stream, ShardCount: 1 }), 'stream exists');
  await expectError('ValidationException', new CreateStreamCommand({ StreamName: 'bad name!', ShardCount: 1 }), 'bad stream name');
  await expectError('ResourceNotFoundException', new GetShardIteratorCommand({ StreamName: stream, ShardId: 'shardId-000000000099', ShardIteratorType: 'TRIM_HORIZON' }), 'unknown shard');
  await expectError('ValidationException', new PutRecordCommand({ StreamName: stream, PartitionKey: '', Data: Buffer.from('x') }), 'empty partition key');
  await expectError('ValidationException', new PutRecordCommand({ StreamName: stream, PartitionKey: 'k'.repeat(257), Data: Buffer.from('x') }), 'partition key too long');
  await expectError('ValidationException', new PutRecordCommand({ StreamName: stream, PartitionKey: 'k', Data: Buffer.alloc((1 << 20) + 1) }), 'record over 1 MiB');
  await expectError('InvalidArgumentException', new PutRecordCommand({ StreamName: stream, PartitionKey: 'k', ExplicitHashKey: '-1', Data: Buffer.from('x') }), 'bad explicit hash key');
  await expectError('ValidationException', new PutRecordsCommand({ StreamName: stream, Records: Array.from({ length: 501 }, () => ({ PartitionKey: 'k', Data: Buffer.from('x') })) }), '501 records');
  await expectError('InvalidArgumentException', new PutRecordsCommand({ StreamName: stream, Records: Array.from({ length: 6 }, () => ({ PartitionKey: 'k', Data: Buffer.alloc(1000 * 1000) })) }), 'PutRecords over 5 MiB');
  await expectError('ValidationException', new GetShardIteratorCommand({ StreamName: stream, ShardId: shard0, ShardIteratorType: 'SOMEWHERE' }), 'bad iterator type');
  await expectError('InvalidArgumentException', new GetShardIteratorCommand({ StreamName: stream, ShardId: shard0, ShardIteratorType: 'AT_SEQUENCE_NUMBER' }), 'AT_SEQUENCE_NUMBER without a number');
  await expectError('InvalidArgumentException', new GetShardIteratorCommand({ StreamName: stream, ShardId: shard0, ShardIteratorType: 'AT_TIMESTAMP' }), 'AT_TIMESTAMP without a timestamp');
  await expectError('InvalidArgumentException', new GetRecordsCommand({ ShardIterator: 'not-an-iterator' }), 'mangled iterator');
  await expectError('ValidationException', new GetRecordsCommand({ ShardIterator: latest, Limit: 10001 }), 'GetRecords Limit');
  await expectError('InvalidArgumentException', new ListShardsCommand({ StreamName: stream, NextToken: page.NextToken || 'x' }), 'NextToken with StreamName');
  await expectError('ValidationException', new ListShardsCommand({ StreamName: stream, MaxResults: 0 }), 'MaxResults 0');
  await expectError('InvalidArgumentException', new DecreaseStreamRetentionPeriodCommand({ StreamName: stream, RetentionPeriodHours: 48 }), 'decrease to longer');
  await expectError('InvalidArgumentException', new IncreaseStreamRetentionPeriodCommand({ StreamName: stream, RetentionPeriodHours: 9000 }), 'retention over 8760 h');
  await expectError('InvalidArgumentException', new DescribeStreamSummaryCommand({ StreamARN: 'arn:aws:s3:::bucket' }), 'not a stream ARN');

  // ---- Retention, limits, monitoring, tags.
  await client.send(new IncreaseStreamRetentionPeriodCommand({ StreamName: stream, RetentionPeriodHours: 48 }));
  const longer = await client.send(new DescribeStreamSummaryCommand({ StreamName: stream }));
  check(longer.StreamDescriptionSummary.RetentionPeriodHours === 48, 'retention increased');
  await client.send(new DecreaseStreamRetentionPeriodCommand({ StreamName: stream, RetentionPeriodHours: 24 }));
  const limits = await client.send(new DescribeLimitsCommand({}));
  check(limits.OpenShardCount >= shardCount && limits.ShardLimit >= limits.OpenShardCount, 'DescribeLimits');
  const monitoring = await client.send(new EnableEnhancedMonitoringCommand({ StreamName: stream, ShardLevelMetrics: ['IncomingBytes'] }));
  check(monitoring.DesiredShardLevelMetrics.includes('IncomingBytes'), 'EnableEnhancedMonitoring');
  await client.send(new AddTagsToStreamCommand({ StreamName: stream, Tags: { team: 'orders', env: 'dev' } }));
  await client.send(new RemoveTagsFromStreamCommand({ StreamName: stream, TagKeys: ['env'] }));
  const tags = await client.send(new ListTagsForStreamCommand({ StreamName: stream }));
  check(tags.Tags.length === 1 && tags.Tags[0].Key === 'team' && tags.Tags[0].Value === 'orders', 'tags');

  // ---- Consumers and SubscribeToShard (an event stream over HTTP/2).
  const consumer = (await client.send(new RegisterStreamConsumerCommand({ StreamARN: arn, ConsumerName: 'fan-out' }))).Consumer;
  check(consumer.ConsumerStatus === 'ACTIVE' && consumer.ConsumerARN.startsWith(`${arn}/consumer/fan-out:`), 'RegisterStreamConsumer');
  await expectError('ResourceInUseException', new RegisterStreamConsumerCommand({ StreamARN: arn, ConsumerName: 'fan-out' }), 'consumer exists');
  const consumerDescription = await client.send(new DescribeStreamConsumerCommand({ ConsumerARN: consumer.ConsumerARN }));
  check(consumerDescription.ConsumerDescription.StreamARN === arn, 'DescribeStreamConsumer');
  const consumers = await client.send(new ListStreamConsumersCommand({ StreamARN: arn }));
  check(consumers.Consumers.length === 1, 'ListStreamConsumers');
  const summaryWithConsumer = await client.send(new DescribeStreamSummaryCommand({ StreamName: stream }));
  check(summaryWithConsumer.StreamDescriptionSummary.ConsumerCount === 1, 'ConsumerCount');

  const subscription = await client.send(new SubscribeToShardCommand({
    ConsumerARN: consumer.ConsumerARN, ShardId: shard0, StartingPosition: { Type: 'TRIM_HORIZON' },
  }));
  const pushed = [];
  for await (const event of subscription.EventStream) {
    if (event.SubscribeToShardEvent) {
      pushed.push(...event.SubscribeToShardEvent.Records);
      check(typeof event.SubscribeToShardEvent.ContinuationSequenceNumber === 'string', 'continuation number');
      if (pushed.some((r) => r.SequenceNumber === fourth.SequenceNumber)) break;
    }
  }
  const polled = await readAll(await iterator(stream, shard0, 'TRIM_HORIZON'));
  check(pushed.length === polled.length, `SubscribeToShard pushed ${pushed.length} records, GetRecords read ${polled.length}`);
  check(pushed.every((r, i) => r.SequenceNumber === polled[i].SequenceNumber && Buffer.compare(r.Data, polled[i].Data) === 0),
    'SubscribeToShard pushes the same records as GetRecords, in order');
  await expectError('ResourceNotFoundException', new SubscribeToShardCommand({
    ConsumerARN: `${arn}/consumer/nobody:1`, ShardId: shard0, StartingPosition: { Type: 'LATEST' },
  }), 'unregistered consumer');

  await client.send(new DeregisterStreamConsumerCommand({ ConsumerARN: consumer.ConsumerARN }));
  await expectError('ResourceNotFoundException', new DescribeStreamConsumerCommand({ ConsumerARN: consumer.ConsumerARN }), 'consumer deregistered');

  // ---- Delete.
  await client.send(new DeleteStreamCommand({ StreamName: stream }));
  await expectError('ResourceNotFoundException', new DescribeStreamSummaryCommand({ StreamName: stream }), 'deleted stream');
  console.log(`sdk_test: ok, ${checks} checks against ${endpoint}`);
}

main().then(
  () => {
    client.destroy();
    process.exit(0);
  },
  (e) => {
    console.error(`sdk_test: FAILED: ${e.stack || e}`);
    process.exit(1);
  },
);
