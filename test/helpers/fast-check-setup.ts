// Loaded by mocha before every test file (.mocharc.json): every fast-check property prints how many
// runs it made and with which seed, so a log shows what the random search covered, and a failure
// can be replayed with FAST_CHECK_SEED=<seed>. A failure still throws fast-check's own report
// (counterexample, seed and path).
import fc from 'fast-check';

// CI runs one fixed seed, so that a landing is decided by the code and not by the draw; every other
// run draws a new one, so the search keeps finding what the fixed seed does not reach.
const CI_SEED = 20261203;
const fromEnv = process.env.FAST_CHECK_SEED;
const seed = fromEnv !== undefined ? Number(fromEnv) : process.env.CI === 'true' ? CI_SEED : Date.now() ^ (Math.random() * 2 ** 31);
if (!Number.isSafeInteger(seed)) throw new Error(`FAST_CHECK_SEED must be an integer, got ${JSON.stringify(fromEnv)}`);

function report(details: fc.RunDetails<unknown>): void {
  if (details.failed) throw new Error(fc.defaultReportMessage(details));
  console.log(`      fast-check: ${details.numRuns} runs passed (seed ${details.seed})`);
}

fc.configureGlobal({ seed, reporter: report });
