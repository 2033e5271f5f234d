// Contract part: corrupt, foreign or old-schema contents read as a miss, never throw, and are repaired
// by the next fill; corrupt RPM counters restart instead of failing the request.
import { expect } from 'chai';
import fc from 'fast-check';
import type { CacheEntityKind } from '../../lib/types.js';
import type { ContractContext } from './cache-contract.js';
import { apiKeyWindowsCase, balanceCase, freshUserId, platformQuotaCase, rpmOverrideCase, subscriptionCase, type KindCase } from './cache-fixtures.js';

type Hash = Record<string, string>;
type Corruption = [description: string, mutate: (hash: Hash) => Hash];

const set =
  (field: string, value: string) =>
  (hash: Hash): Hash => ({ ...hash, [field]: value });
const drop =
  (field: string) =>
  (hash: Hash): Hash => {
    const copy = { ...hash };
    delete copy[field];
    return copy;
  };

const META_CORRUPTIONS: Corruption[] = [
  ['a non-numeric version', set('v', 'five')],
  ['a negative version', set('v', '-5')],
  ['a missing version', drop('v')],
];

const CORRUPTIONS: [KindCase<CacheEntityKind>, Corruption[]][] = [
  [
    balanceCase,
    [
      ['a decimal balance', set('b', '12.5')],
      ['a non-numeric balance', set('b', 'lots')],
      ['an empty balance', set('b', '')],
      ['a balance beyond 2^53-1 units', set('b', '9007199254740992')],
      ['a balance in exponent form', set('b', '1e9')],
      ['a missing balance', drop('b')],
    ],
  ],
  [
    subscriptionCase,
    [
      ['an unknown status', set('st', 'paused')],
      ['a status with a separator', set('st', 'active|expired')],
      ['a non-numeric expiry', set('e', 'soon')],
      ['a hexadecimal usage', set('du', '0x10')],
      ['an empty subscription id', set('i', '')],
      ['a missing window start', drop('ms')],
    ],
  ],
  [
    apiKeyWindowsCase,
    [
      ['a padded usage', set('u5', ' 5')],
      ['a negative window start', set('s1', '-1')],
      ['a missing usage', drop('u7')],
    ],
  ],
  [
    platformQuotaCase,
    [
      ['an old schema version', set('s', '0')],
      ['no schema version', drop('s')],
      ['a sentinel flag that is neither 0 nor 1', set('x', 'yes')],
      ['a limit that is only a sign', set('dl', '-')],
      ['a decimal window start', set('ws', '1.0')],
    ],
  ],
  [
    rpmOverrideCase,
    [
      ['a word for the override', set('o', 'none')],
      ['a negative override', set('o', '-1')],
      ['a missing override', drop('o')],
    ],
  ],
];

export function corruptContract(ctx: ContractContext): void {
  describe('corrupt contents', function () {
    /** A valid stored entry of `kind` at version 5 and generation 3, then corrupted by `mutate`. */
    async function corrupted(kind: KindCase<CacheEntityKind>, mutate: (hash: Hash) => Hash): Promise<string> {
      const userId = freshUserId();
      const key = ctx.cache.keys.entity(kind.ref(userId));
      expect(await ctx.cache.put(kind.ref(userId), kind.value(5, 1))).to.equal(true);
      const stored = await ctx.raw.read(key);
      if (!stored) throw new Error(`put did not store ${key}`);
      await ctx.raw.write(key, mutate({ ...stored, g: '3' }));
      return userId;
    }

    for (const [kind, corruptions] of CORRUPTIONS) {
      describe(kind.kind, function () {
        for (const [description, mutate] of [...corruptions, ...META_CORRUPTIONS]) {
          it(`reads ${description} as a miss that the next fill repairs`, async function () {
            const userId = await corrupted(kind, mutate);
            expect((await ctx.cache.readBatch(kind.batch(userId)))[kind.slot]).to.deep.equal({ hit: false, generation: 3 });
            // The store still holds version 5: refusing an equal version here would keep the entry
            // corrupt (and every read a miss) until it expired.
            expect(await ctx.cache.fill(kind.ref(userId), kind.value(5, 1), 3)).to.equal(true);
            expect((await ctx.cache.readBatch(kind.batch(userId)))[kind.slot]).to.deep.equal({ hit: true, value: kind.value(5, 1) });
          });
        }

        it('invalidates corrupt contents into a tombstone of the next generation', async function () {
          const userId = await corrupted(kind, corruptions[0]![1]);
          await ctx.cache.invalidate(kind.ref(userId));
          expect((await ctx.cache.readBatch(kind.batch(userId)))[kind.slot]).to.deep.equal({ hit: false, generation: 4 });
        });
      });
    }

    it('random corrupt contents (any field set to any text, dropped, or added): a miss that the next fill repairs, or a well-formed value; never a throw (found: a version "-0")', async function () {
      this.timeout(60_000);
      const kinds = CORRUPTIONS.map(([kind]) => kind);
      const junk = fc.oneof(fc.string({ maxLength: 24 }), fc.constantFrom('', '-', '1e9', '0x1', ' 1', '9007199254740992', '-0', 'active|x', '\u0000', 'NaN'));
      const edit = fc.oneof(
        fc.record({ op: fc.constant('set' as const), field: fc.nat(), value: junk }),
        fc.record({ op: fc.constant('drop' as const), field: fc.nat() }),
        fc.record({ op: fc.constant('add' as const), name: fc.string({ minLength: 1, maxLength: 4 }), value: junk }),
      );
      await fc.assert(
        fc.asyncProperty(fc.nat(kinds.length - 1), fc.array(edit, { minLength: 1, maxLength: 4 }), async (k, edits) => {
          const kind = kinds[k]!;
          const userId = await corrupted(kind, (hash) => {
            const out = { ...hash };
            const fields = Object.keys(hash);
            for (const e of edits) {
              if (e.op === 'add') out[e.name] = e.value;
              else if (e.op === 'set') out[fields[e.field % fields.length]!] = e.value;
              else delete out[fields[e.field % fields.length]!];
            }
            return out;
          });
          const read = (await ctx.cache.readBatch(kind.batch(userId)))[kind.slot] as { hit: boolean; value?: unknown; generation?: number };
          // A hit is a well-formed value (edits may have written other valid values): it survives a round trip.
          if (read.hit) {
            const fresh = freshUserId();
            expect(await ctx.cache.put(kind.ref(fresh), read.value as never)).to.equal(true);
            expect((await ctx.cache.readBatch(kind.batch(fresh)))[kind.slot]).to.deep.equal({ hit: true, value: read.value });
          } else {
            // A miss is repaired by the next fill from the store.
            expect(await ctx.cache.fill(kind.ref(userId), kind.value(5, 1), read.generation!)).to.equal(true);
            expect((await ctx.cache.readBatch(kind.batch(userId)))[kind.slot]).to.deep.equal({ hit: true, value: kind.value(5, 1) });
          }
        }),
        { numRuns: ctx.target.clock ? 200 : 60 },
      );
    });

    it('still honours a readable version when only the data is corrupt', async function () {
      const userId = await corrupted(balanceCase, set('b', 'lots'));
      expect(await ctx.cache.put(balanceCase.ref(userId), balanceCase.value(5, 2))).to.equal(false);
      expect(await ctx.cache.put(balanceCase.ref(userId), balanceCase.value(6, 2))).to.equal(true);
      expect((await ctx.cache.readBatch(balanceCase.batch(userId))).balance).to.deep.equal({ hit: true, value: balanceCase.value(6, 2) });
    });

    it('lets a put replace an entry whose version is unreadable', async function () {
      const userId = await corrupted(balanceCase, set('v', '1.5'));
      expect(await ctx.cache.put(balanceCase.ref(userId), balanceCase.value(1, 2))).to.equal(true);
      expect((await ctx.cache.readBatch(balanceCase.batch(userId))).balance).to.deep.equal({ hit: true, value: balanceCase.value(1, 2) });
    });

    it('reads an unreadable generation as 0, a hit when the data is intact', async function () {
      const intact = await corrupted(balanceCase, set('g', 'three'));
      expect((await ctx.cache.readBatch(balanceCase.batch(intact))).balance).to.deep.equal({ hit: true, value: balanceCase.value(5, 1) });
      const broken = await corrupted(balanceCase, (hash) => ({ ...hash, g: '-1', b: '' }));
      expect((await ctx.cache.readBatch(balanceCase.batch(broken))).balance).to.deep.equal({ hit: false, generation: 0 });
      expect(await ctx.cache.fill(balanceCase.ref(broken), balanceCase.value(5, 1), 0)).to.equal(true);
      await ctx.cache.invalidate(balanceCase.ref(broken));
      expect((await ctx.cache.readBatch(balanceCase.batch(broken))).balance).to.deep.equal({ hit: false, generation: 1 });
    });

    it('reads a hash without any of its fields as absent', async function () {
      const userId = freshUserId();
      await ctx.raw.write(ctx.cache.keys.entity(balanceCase.ref(userId)), { unrelated: 'x' });
      expect((await ctx.cache.readBatch(balanceCase.batch(userId))).balance).to.deep.equal({ hit: false, generation: 0 });
    });

    it('restarts an RPM counter whose bucket or count is unreadable', async function () {
      const userId = freshUserId();
      const key = ctx.cache.keys.rpmUser(userId);
      const { bucketEndsAtMs } = await ctx.cache.rpmHit({ userId, userCap: 100 });
      const bucket = String(bucketEndsAtMs / 60_000 - 1);
      const unreadable: Hash[] = [
        { [bucket]: 'many' },
        { [bucket]: '-3' },
        { [bucket]: '0' },
        { [bucket]: '007' },
        { [bucket]: '9007199254740991' },
        { [bucket]: '' },
        { b: bucket, c: '7' },
        { now: '7' },
      ];
      for (const garbage of unreadable) {
        await ctx.raw.write(key, garbage);
        const result = await ctx.cache.rpmHit({ userId, userCap: 100 });
        // A hit that lands in the next minute restarts at 1 as well.
        expect([result.outcome, result.userCount], JSON.stringify(garbage)).to.deep.equal(['allowed', 1]);
        expect(Object.values((await ctx.raw.read(key))!), JSON.stringify(garbage)).to.deep.equal(['1']);
      }
    });
  });
}
