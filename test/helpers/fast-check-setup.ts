// Loaded by mocha before every test file (.mocharc.json): every fast-check property prints how many
// runs it made and with which seed, so a CI log shows what the random search covered, and a failure
// can be replayed with FAST_CHECK_SEED=<seed>. A failure still throws fast-check's own report
// (counterexample, seed and path).
import fc from 'fast-check';

const fromEnv = process.env.FAST_CHECK_SEED;
const seed = fromEnv === undefined ? Date.now() ^ (Math.random() * 2 ** 31) : Number(fromEnv);
if (!Number.isSafeInteger(seed)) throw new Error(`FAST_CHECK_SEED must be an integer, got ${JSON.stringify(fromEnv)}`);

function report(details: fc.RunDetails<unknown>): void {
  if (details.failed) throw new Error(fc.defaultReportMessage(details));
  console.log(`      fast-check: ${details.numRuns} runs passed (seed ${details.seed})`);
}

fc.configureGlobal({ seed, reporter: report });
