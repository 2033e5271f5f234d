// BillingCache on Redis or Redis Cluster (ioredis): each operation is one Lua script call on one
// user's hash-tagged keys, so it is one round trip and runs unchanged on a Cluster (docs/architecture.md).
import type { Cluster, Redis } from 'ioredis';
import type {
  BillingCache,
  CacheBatchRequest,
  CacheBatchResult,
  CacheEntityKind,
  CacheEntityMap,
  CacheEntityRef,
  LeaseInfo,
  ReserveRequest,
  ReserveResult,
  RpmRequest,
  RpmResult,
} from '../types.js';
import { batchRefs, batchResult, freezeBatchResult, type BatchSlot } from './batch.js';
import { encodeEntity, hashFromFlatReply, luaRule } from './entity-codec.js';
import { keySlot } from './key-slot.js';
import { assertKeyPrefix, CacheKeys, DEFAULT_KEY_PREFIX } from './keys.js';
import { BALANCE_FIELD, WINDOW_FIELDS, assertLeaseId, assertRenewal, assertReserveRequest, decodeLease } from './leases.js';
import {
  FILL_LUA,
  INVALIDATE_LUA,
  LIST_LEASES_LUA,
  PUT_LUA,
  READ_BATCH_COUNTING_LUA,
  READ_BATCH_LUA,
  RELEASE_LUA,
  RENEW_LUA,
  RESERVE_LUA,
  RPM_HIT_LUA,
  SERVER_TIME_LUA,
} from './redis-scripts.js';
import { assertRpmRequest, parseRpmReply, rpmBucket, rpmResult } from './rpm.js';
import { ServerClockBounds, localNowMs } from './server-clock.js';
import { CACHE_TTL_MS, entityTtlMs } from './ttl.js';
import { TurnWrites } from './turn-writes.js';

export interface RedisBillingCacheOptions {
  /** Prepended to every key; no braces or whitespace, at most 64 characters. Default 'kbe:'. */
  prefix?: string;
  /** Source of the TTL jitter, [0, 1) like Math.random (the default); inject for deterministic tests. */
  random?: () => number;
  /** Whether close() also quits the client. Default false: the application owns its client. */
  quitOnClose?: boolean;
  /**
   * Whether the commands sent in one event-loop turn leave in one socket write (the client's
   * connections are corked until the turn's check phase, see lib/cache/turn-writes.ts). Default
   * true: under load it saves the process about a quarter of a warm request's CPU, and Redis about
   * half. Other commands the application sends on the same client in that turn leave with them.
   */
  coalesceWrites?: boolean;
}

type ScriptArg = string | number;

/** The commands `defineCommand` adds; names are namespaced so they cannot clash with the app's own. */
interface ScriptCommands {
  kbeReadBatch(numKeys: number, ...keys: string[]): Promise<unknown>;
  kbeReadBatchCounting(numKeys: number, ...keysAndArgs: ScriptArg[]): Promise<unknown>;
  kbeFill(key: string, stampKey: string, ...args: ScriptArg[]): Promise<unknown>;
  kbePut(key: string, stampKey: string, ...args: ScriptArg[]): Promise<unknown>;
  kbeInvalidate(key: string, stampKey: string, ttlMs: number): Promise<unknown>;
  kbeRpmHit(numKeys: number, ...keysAndArgs: ScriptArg[]): Promise<unknown>;
  kbeReserve(numKeys: number, ...keysAndArgs: ScriptArg[]): Promise<unknown>;
  kbeRelease(leases: string, totals: string, expiry: string, leaseId: string): Promise<unknown>;
  kbeRenew(leases: string, totals: string, expiry: string, ttlMs: number, ...leaseIds: string[]): Promise<unknown>;
  kbeListLeases(key: string): Promise<unknown>;
  kbeServerTime(key: string): Promise<unknown>;
}

/** Everything this cache sends: its scripts and one plain command. */
type CacheCommands = ScriptCommands & Pick<Redis, 'ping'>;

function appliedFlag(reply: unknown, script: string): boolean {
  if (reply === 1) return true;
  if (reply === 0) return false;
  throw new Error(`${script} script returned an unexpected reply ${JSON.stringify(reply)}`);
}

/**
 * Users whose last batched-read replies are kept decoded, and key lists kept per user (one per API
 * key and platform the user's requests read; the least recently used go first). A warm read whose
 * reply text equals the previous one for the same keys (nothing was written in between) reuses
 * that decoding instead of parsing JSON and every field again; a write changes the text, and the
 * next read decodes afresh. Bounded: about 1 KB per key list.
 */
const DECODED_USERS_MAX = 1024;
const DECODED_LISTS_PER_USER = 4;

/** One batched read's refs, their keys in order, and the user's change stamp key. */
interface BatchKeys {
  refs: [BatchSlot, CacheEntityRef][];
  keys: string[];
  stampKey: string;
}

/** A decoded batched-read reply: its keys and text, the user's change stamp read with it, and whether every entity was a hit. */
interface DecodedReply {
  keys: string[];
  text: string;
  stamp: string;
  result: CacheBatchResult;
  allHits: boolean;
}

/** Decodes the JSON text of a batched read; per entry, anything malformed is only a miss (bad data must never fail a request). */
function decodeBatchText(refs: [BatchSlot, CacheEntityRef][], keys: string[], text: string, stamp: string): DecodedReply {
  const entries: unknown = JSON.parse(text);
  if (!Array.isArray(entries) || entries.length !== keys.length) {
    throw new Error(`read script returned ${Array.isArray(entries) ? `${entries.length} entries for ${keys.length} keys` : 'a non-array reply'}`);
  }
  const result = freezeBatchResult(batchResult(refs, entries.map(hashFromFlatReply)));
  return { keys, text, stamp, result, allHits: Object.values(result).every((read) => read?.hit === true) };
}

/**
 * Whether two key lists are the same. Key names are built once per user and id (CacheKeys), so
 * equal names are usually the same string and compare at once, where looking up a joined name
 * would hash a new string of every key on every request.
 */
function sameKeys(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** A reserve that reached Redis after its caller gave up on it: refused by the script, nothing held. */
export class ReserveDeadlineError extends Error {
  override readonly name = 'ReserveDeadlineError';
}

export class RedisBillingCache implements BillingCache {
  readonly #client: Redis | Cluster;
  readonly #scripts: CacheCommands;
  /** Null when coalesceWrites is off. */
  readonly #turnWrites: TurnWrites | null;
  readonly #keys: CacheKeys;
  readonly #random: () => number;
  readonly #quitOnClose: boolean;
  /** Last replies per user (keyed by the change-stamp key) and key list, decoded (see DECODED_USERS_MAX); results are frozen, so sharing them is safe. */
  readonly #decodedReplies = new Map<string, DecodedReply[]>();
  /** Lower bounds of each server's clock, for the reserve deadline. */
  readonly #serverClocks = new ServerClockBounds();
  /** When the client gives up on a command (its commandTimeout); undefined: never, and no deadline is sent. */
  readonly #giveUpMs: number | undefined;
  #closed = false;

  constructor(client: Redis | Cluster, options: RedisBillingCacheOptions = {}) {
    if (client === null || typeof client !== 'object' || typeof (client as Partial<Redis>).defineCommand !== 'function') {
      throw new TypeError('client must be an ioredis Redis or Cluster instance');
    }
    if (options.random !== undefined && typeof options.random !== 'function') {
      throw new TypeError(`random must be a function returning [0, 1), got ${typeof options.random}`);
    }
    for (const name of ['quitOnClose', 'coalesceWrites'] as const) {
      if (options[name] !== undefined && typeof options[name] !== 'boolean') {
        throw new TypeError(`${name} must be a boolean, got ${typeof options[name]}`);
      }
    }
    this.#keys = new CacheKeys(assertKeyPrefix(options.prefix ?? DEFAULT_KEY_PREFIX, 'prefix'));
    this.#random = options.random ?? Math.random;
    this.#quitOnClose = options.quitOnClose ?? false;
    this.#client = client;
    const commandTimeout = client.isCluster ? (client as Cluster).options.redisOptions?.commandTimeout : (client as Redis).options.commandTimeout;
    this.#giveUpMs = typeof commandTimeout === 'number' && commandTimeout > 0 ? commandTimeout : undefined;
    this.#turnWrites = options.coalesceWrites === false ? null : new TurnWrites(client);
    // defineCommand sends EVALSHA and falls back to EVAL on NOSCRIPT, per connection, so scripts
    // survive a SCRIPT FLUSH or a failover; Cluster routes each call by the slot of its KEYS.
    client.defineCommand('kbeReadBatch', { lua: READ_BATCH_LUA });
    client.defineCommand('kbeReadBatchCounting', { lua: READ_BATCH_COUNTING_LUA });
    client.defineCommand('kbeFill', { lua: FILL_LUA, numberOfKeys: 2 });
    client.defineCommand('kbePut', { lua: PUT_LUA, numberOfKeys: 2 });
    client.defineCommand('kbeInvalidate', { lua: INVALIDATE_LUA, numberOfKeys: 2 });
    client.defineCommand('kbeRpmHit', { lua: RPM_HIT_LUA });
    client.defineCommand('kbeReserve', { lua: RESERVE_LUA });
    client.defineCommand('kbeRelease', { lua: RELEASE_LUA, numberOfKeys: 3 });
    client.defineCommand('kbeRenew', { lua: RENEW_LUA, numberOfKeys: 3 });
    client.defineCommand('kbeListLeases', { lua: LIST_LEASES_LUA, numberOfKeys: 1 });
    client.defineCommand('kbeServerTime', { lua: SERVER_TIME_LUA, numberOfKeys: 1 });
    this.#scripts = client as unknown as CacheCommands;
  }

  /** The client to send a command on now, its writes of this turn held to leave together (coalesceWrites). */
  #commands(): CacheCommands {
    this.#turnWrites?.hold();
    return this.#scripts;
  }

  /** The key names this cache uses (tests and operators inspect entries with them). */
  get keys(): CacheKeys {
    return this.#keys;
  }

  async readBatch(request: CacheBatchRequest): Promise<CacheBatchResult> {
    this.#assertOpen();
    const batch = this.#batchKeys(request);
    return batch === null ? {} : this.#plainRead(batch);
  }

  async readBatchCounting(
    request: CacheBatchRequest,
    countIf: (last: CacheBatchResult) => RpmRequest | null,
  ): Promise<{ batch: CacheBatchResult; rpm?: RpmResult }> {
    this.#assertOpen();
    const batch = this.#batchKeys(request);
    if (batch === null) return { batch: {} };
    const last = this.#lastReply(batch);
    // Only a reply of hits can be confirmed by the script (unchanged stamp, every key still there).
    const rpm = last === undefined || !last.allHits ? null : countIf(last.result);
    if (last === undefined || rpm === null) return { batch: await this.#plainRead(batch, last) };
    assertRpmRequest(rpm);
    const { keys, stampKey } = batch;
    const rpmKeys = this.#rpmKeys(rpm);
    const reply = await this.#commands().kbeReadBatchCounting(
      keys.length + 1 + rpmKeys.length,
      ...keys,
      stampKey,
      ...rpmKeys,
      keys.length,
      last.stamp,
      rpm.userCap,
      rpm.group?.cap ?? 0,
    );
    if (typeof reply === 'string') return { batch: last.result, rpm: this.#rpmReply(reply) };
    // A batched read's reply: an entity of the user was written or has expired since `last`, nothing was counted; the fresh reply is checked as usual.
    return { batch: this.#decodeReply(batch, reply, last) };
  }

  /** The refs a batch request reads and their keys; null when it reads nothing. */
  #batchKeys(request: CacheBatchRequest): BatchKeys | null {
    const refs = batchRefs(request);
    if (refs.length === 0) return null;
    const keys = refs.map(([, ref]) => this.#keys.entity(ref));
    return { refs, keys, stampKey: this.#keys.changeStamp(request.userId) };
  }

  /** `memo`: the kept decoding for these keys, when the caller has already looked it up. */
  async #plainRead(batch: BatchKeys, memo?: DecodedReply): Promise<CacheBatchResult> {
    return this.#decodeReply(batch, await this.#commands().kbeReadBatch(batch.keys.length + 1, ...batch.keys, batch.stampKey), memo);
  }

  /** A batched-read reply ({ stamp, JSON text }) as a result: the kept decoding when the text is unchanged, else decoded; kept with the stamp. */
  #decodeReply(batch: BatchKeys, reply: unknown, memo = this.#lastReply(batch)): CacheBatchResult {
    const [stamp, text] = Array.isArray(reply) ? (reply as unknown[]) : [];
    if (typeof stamp !== 'string' || typeof text !== 'string') throw new Error('read script returned a malformed reply');
    // The decoding depends on the text alone, so a memo looked up before the reply arrived is as good.
    const decoded = memo !== undefined && memo.text === text ? { ...memo, stamp } : decodeBatchText(batch.refs, batch.keys, text, stamp);
    this.#rememberReply(batch.stampKey, decoded);
    return decoded.result;
  }

  #lastReply({ stampKey, keys }: BatchKeys): DecodedReply | undefined {
    const lists = this.#decodedReplies.get(stampKey);
    if (lists !== undefined) for (const reply of lists) if (sameKeys(reply.keys, keys)) return reply;
    return undefined;
  }

  #rememberReply(stampKey: string, reply: DecodedReply): void {
    const replies = this.#decodedReplies;
    const lists = (replies.get(stampKey) ?? []).filter((kept) => !sameKeys(kept.keys, reply.keys));
    lists.push(reply);
    if (lists.length > DECODED_LISTS_PER_USER) lists.shift();
    // Oldest first: Map keeps insertion order, and a user read again was just moved to the end.
    replies.delete(stampKey);
    replies.set(stampKey, lists);
    if (replies.size > DECODED_USERS_MAX) replies.delete(replies.keys().next().value as string);
  }

  async fill<K extends CacheEntityKind>(ref: CacheEntityRef & { kind: K }, value: CacheEntityMap[K], generation: number): Promise<boolean> {
    this.#assertOpen();
    if (!Number.isSafeInteger(generation) || generation < 0) {
      throw new TypeError(`generation must be a non-negative integer, got ${String(generation)}`);
    }
    const args: ScriptArg[] = [generation, value.version, entityTtlMs(ref.kind, value, this.#random)];
    for (const { field, value: text, rule } of encodeEntity(ref.kind, value)) args.push(field, text, luaRule(rule));
    return appliedFlag(await this.#commands().kbeFill(this.#keys.entity(ref), this.#keys.changeStamp(ref.userId), ...args), 'fill');
  }

  async put<K extends CacheEntityKind>(ref: CacheEntityRef & { kind: K }, value: CacheEntityMap[K]): Promise<boolean> {
    this.#assertOpen();
    const args: ScriptArg[] = [value.version, entityTtlMs(ref.kind, value, this.#random)];
    for (const { field, value: text } of encodeEntity(ref.kind, value)) args.push(field, text);
    return appliedFlag(await this.#commands().kbePut(this.#keys.entity(ref), this.#keys.changeStamp(ref.userId), ...args), 'put');
  }

  async invalidate(ref: CacheEntityRef): Promise<void> {
    this.#assertOpen();
    const reply = await this.#commands().kbeInvalidate(this.#keys.entity(ref), this.#keys.changeStamp(ref.userId), CACHE_TTL_MS.tombstone);
    if (typeof reply !== 'number' || !Number.isSafeInteger(reply) || reply < 1) {
      throw new Error(`invalidate script returned an unexpected reply ${JSON.stringify(reply)}`);
    }
  }

  async rpmHit(request: RpmRequest): Promise<RpmResult> {
    this.#assertOpen();
    assertRpmRequest(request);
    const keys = this.#rpmKeys(request);
    return this.#rpmReply(await this.#commands().kbeRpmHit(keys.length, ...keys, request.userCap, request.group?.cap ?? 0));
  }

  /** The user counter, then the user-in-group counter when a group cap applies (the RPM script's KEYS). */
  #rpmKeys(request: RpmRequest): string[] {
    const keys = [this.#keys.rpmUser(request.userId)];
    if (request.group) keys.push(this.#keys.rpmGroup(request.userId, request.group.groupId));
    return keys;
  }

  #rpmReply(reply: unknown): RpmResult {
    const numbers = parseRpmReply(reply);
    if (numbers === null) throw new Error(`rpm script returned a malformed reply ${JSON.stringify(reply)}`);
    const [outcome, groupCount, userCount, nowMs] = numbers as [number, number, number, number];
    // The script's bucket arithmetic on its own clock: the bucket of nowMs ends where its bucket did.
    return rpmResult(outcome, groupCount, userCount, rpmBucket(nowMs).endsAtMs, nowMs);
  }

  async reserve(request: ReserveRequest): Promise<ReserveResult> {
    this.#assertOpen();
    assertReserveRequest(request);
    if (request.rpm) assertRpmRequest(request.rpm);
    const book = this.#keys.leaseBook(request.userId);
    const keys: string[] = [...book];
    const enforced = (name: string) => (request.unenforced?.has(name) ? '0' : '1');
    // The deadline (fourth) is set below once the keys are known; RESERVE_LUA names every argument.
    const args: ScriptArg[] = [
      request.leaseId,
      request.amount.toString(),
      request.ttlMs,
      0,
      request.dimensions.length,
      0,
      0,
      0,
      0,
      request.replaceOnly ? '1' : '0',
    ];
    if (request.rpm) {
      const [userCounter, groupCounter] = this.#rpmKeys(request.rpm);
      args[5] = keys.push(userCounter!);
      if (groupCounter !== undefined) args[6] = keys.push(groupCounter);
      args[7] = request.rpm.userCap;
      args[8] = request.rpm.group?.cap ?? 0;
    }
    for (const dimension of request.dimensions) {
      const key = this.#keys.entity(dimension.entity);
      let index = keys.indexOf(key);
      if (index < 0) index = keys.push(key) - 1;
      if (dimension.kind === 'balance') {
        args.push(dimension.name, 'b', index + 1, BALANCE_FIELD, '', 0, dimension.fallbackCapacity.toString(), 0, enforced(dimension.name));
      } else {
        const fields = WINDOW_FIELDS[dimension.window];
        args.push(
          dimension.name,
          'w',
          index + 1,
          fields.usage,
          fields.start,
          dimension.expiryThreshold,
          dimension.limit.toString(),
          dimension.fallbackUsed.toString(),
          enforced(dimension.name),
        );
      }
    }
    for (const slot of request.slots ?? []) args.push(slot.name, slot.limit, enforced(slot.name));
    const leaseKey = book[0];
    const domain = this.#clockDomain(leaseKey);
    args[3] = await this.#reserveDeadline(domain, leaseKey);
    let reply: unknown;
    try {
      reply = await this.#commands().kbeReserve(keys.length, ...keys, ...args);
    } catch (err) {
      // The script may have run with its reply lost. A release sent now runs after it, unless the
      // script is still waiting to run — then it runs past its deadline and holds nothing. A hold
      // that was growing keeps what it had either way: its request still owns it and ends it.
      if (!request.replaceOnly) {
        this.#commands()
          .kbeRelease(...book, request.leaseId)
          .catch(() => {});
      }
      throw err;
    }
    const receivedAtMs = localNowMs();
    if (Array.isArray(reply) && reply[0] === 'reserved' && typeof reply[1] === 'string' && /^\d+$/.test(reply[1]) && typeof reply[2] === 'string') {
      const expiresAtMs = Number(reply[1]);
      this.#serverClocks.sample(domain, expiresAtMs - request.ttlMs, receivedAtMs);
      const slotsInUse = (reply.slice(4) as unknown[]).map(Number);
      if (slotsInUse.length !== (request.slots?.length ?? 0) || !slotsInUse.every(Number.isSafeInteger))
        throw new Error(`reserve script returned a malformed reply ${JSON.stringify(reply)}`);
      const rpm = request.rpm ? this.#rpmReply(reply[3]) : undefined;
      return { outcome: 'reserved', expiresAtMs, slotsInUse, over: reply[2] === '' ? undefined : reply[2], rpm };
    }
    if (Array.isArray(reply) && reply[0] === 'rpm' && request.rpm) return { outcome: 'rpm_exceeded', rpm: this.#rpmReply(reply[1]) };
    if (Array.isArray(reply) && reply[0] === 'gone' && request.replaceOnly) return { outcome: 'gone' };
    if (Array.isArray(reply) && reply[0] === 'stale' && request.replaceOnly && typeof reply[1] === 'string') return { outcome: 'stale', dimension: reply[1] };
    if (Array.isArray(reply) && reply[0] === 'denied' && typeof reply[1] === 'string' && typeof reply[2] === 'string' && /^-?\d+$/.test(reply[2])) {
      this.#serverClocks.sample(domain, Number(reply[3]), receivedAtMs);
      return { outcome: 'denied', dimension: reply[1], availableUnits: BigInt(reply[2]) };
    }
    if (Array.isArray(reply) && reply[0] === 'late') {
      this.#serverClocks.sample(domain, Number(reply[1]), receivedAtMs);
      throw new ReserveDeadlineError(`the reserve script ran after its caller had given up (${this.#giveUpMs} ms); it held nothing`);
    }
    throw new Error(`reserve script returned a malformed reply ${JSON.stringify(reply)}`);
  }

  /**
   * The moment, on the clock of the server that will run the script, after which the client will have
   * given up on it: our give-up moment plus a lower bound of that server's clock offset, so the
   * deadline never falls after the give-up. Without a recent bound, one TIME round trip gets one.
   */
  async #reserveDeadline(domain: string, leaseKey: string): Promise<number> {
    if (this.#giveUpMs === undefined) return 0;
    let serverNowMs = this.#serverClocks.serverTimeAtMost(domain, localNowMs());
    if (serverNowMs === undefined) {
      const serverMs = Number(await this.#commands().kbeServerTime(leaseKey));
      this.#serverClocks.sample(domain, serverMs, localNowMs());
      serverNowMs = this.#serverClocks.serverTimeAtMost(domain, localNowMs());
      if (serverNowMs === undefined) throw new Error('the Redis server sent no usable time');
    }
    return serverNowMs + this.#giveUpMs;
  }

  /** Whose clock a command on `key` reads: the single server's, or the Cluster master's that serves its slot. */
  #clockDomain(key: string): string {
    if (!this.#client.isCluster) return '';
    return (this.#client as Cluster).slots[keySlot(key)]?.[0] ?? '';
  }

  async release(userId: string, leaseId: string): Promise<boolean> {
    this.#assertOpen();
    assertLeaseId(leaseId);
    return appliedFlag(await this.#commands().kbeRelease(...this.#keys.leaseBook(userId), leaseId), 'release');
  }

  async renew(userId: string, leaseIds: readonly string[], ttlMs: number): Promise<string[]> {
    this.#assertOpen();
    assertRenewal(leaseIds, ttlMs);
    if (leaseIds.length === 0) return [];
    const reply = await this.#commands().kbeRenew(...this.#keys.leaseBook(userId), ttlMs, ...leaseIds);
    if (!Array.isArray(reply) || !reply.every((id) => typeof id === 'string'))
      throw new Error(`renew script returned a malformed reply ${JSON.stringify(reply)}`);
    return reply as string[];
  }

  async listLeases(userId: string): Promise<LeaseInfo[]> {
    this.#assertOpen();
    const reply = await this.#commands().kbeListLeases(this.#keys.leases(userId));
    if (!Array.isArray(reply) || typeof reply[0] !== 'string') throw new Error('list-leases script returned a malformed reply');
    const nowMs = Number(reply[0]);
    const hash = hashFromFlatReply(reply.slice(1)) ?? {};
    return Object.entries(hash)
      .map(([leaseId, value]) => decodeLease(leaseId, value))
      .filter((lease): lease is LeaseInfo => lease !== null && lease.expiresAtMs > nowMs);
  }

  async ping(): Promise<void> {
    this.#assertOpen();
    const reply = await this.#commands().ping();
    if (reply !== 'PONG') throw new Error(`Redis answered PING with ${JSON.stringify(reply)}`);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#decodedReplies.clear();
    if (this.#quitOnClose) await this.#client.quit();
  }

  #assertOpen(): void {
    if (this.#closed) throw new Error('RedisBillingCache is closed');
  }
}
