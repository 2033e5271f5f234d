// The benchmark harness's own arithmetic and settings (test/bench): what the published ratios rest on.
import { expect } from 'chai';
import { INSTRUCTION_APPS, readConfig } from '../bench/config.js';
import { countFromDumps, dumpInstructions } from '../bench/instructions.js';
import { Turns } from '../bench/turns.js';

describe('benchmark harness', () => {
  describe('turns of one app in one round', () => {
    it('adds requests over seconds, CPU over requests and percentiles over every response of every turn', () => {
      const turns = new Turns();
      turns.add({ requests: 1000, seconds: 1, non2xx: 0, errors: 0, timeouts: 0 }, { server: 0.03, redis: 0.002, loadGenerator: 0.02 });
      for (let i = 1; i <= 99; i++) turns.latencies.push(1);
      turns.add({ requests: 3000, seconds: 1.5, non2xx: 0, errors: 0, timeouts: 0 }, { server: 0.05, redis: 0.006, loadGenerator: 0.04 });
      turns.latencies.push(50);
      const result = turns.result();
      // 4000 requests in 2.5 s, not the mean of the turns' rates (1000 and 2000 req/s: 1500).
      expect(result.requests).to.equal(4000);
      expect(result.seconds).to.equal(2.5);
      expect(result.reqPerSec).to.equal(1600);
      // 0.08 s of server CPU over 4000 requests = 20 µs each; the mean of the turns' 30 and 16.7 µs would be 23.3.
      expect(result.cpu).to.deep.equal({ serverUs: 20, redisUs: 2, loadGeneratorUs: 15 });
      expect(result.p50Ms).to.equal(1);
      expect(result.p99Ms).to.equal(1);
      turns.latencies.push(50);
      expect(turns.result().p99Ms).to.equal(50);
    });

    it('reports NaN percentiles rather than zeros when no response was recorded', () => {
      const turns = new Turns();
      turns.add({ requests: 0, seconds: 1, non2xx: 0, errors: 0, timeouts: 0 }, { server: 0, redis: 0, loadGenerator: 0 });
      const result = turns.result();
      expect(result.reqPerSec).to.equal(0);
      expect(result.p99Ms).to.be.NaN;
    });
  });

  describe('settings from the environment', () => {
    const names = ['BENCH_DURATION_S', 'BENCH_SLICE_S', 'BENCH_TURN_WARMUP_MS', 'BENCH_PARTS', 'BENCH_INSTRUCTION_APPS'] as const;
    const saved = new Map(names.map((name) => [name, process.env[name]]));
    afterEach(() => {
      for (const [name, value] of saved) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
    });
    const withEnv = (values: Partial<Record<(typeof names)[number], string>>) => {
      for (const name of names) delete process.env[name];
      Object.assign(process.env, values);
      return readConfig();
    };

    it('defaults to 5 s per app per round in 1 s turns, each after 500 ms of unmeasured load', () => {
      const config = withEnv({});
      expect([config.durationS, config.sliceS, config.turnWarmupMs]).to.deep.equal([5, 1, 500]);
    });

    it('refuses a duration that is not a whole number of turns, naming both settings', () => {
      expect(() => withEnv({ BENCH_DURATION_S: '5', BENCH_SLICE_S: '2' })).to.throw(
        TypeError,
        /BENCH_DURATION_S \(5\) must be a multiple of BENCH_SLICE_S \(2\)/,
      );
      expect(withEnv({ BENCH_DURATION_S: '6', BENCH_SLICE_S: '2' }).sliceS).to.equal(2);
    });

    it('accepts no lead-in (0) and refuses a negative or fractional one', () => {
      expect(withEnv({ BENCH_TURN_WARMUP_MS: '0' }).turnWarmupMs).to.equal(0);
      expect(() => withEnv({ BENCH_TURN_WARMUP_MS: '-1' })).to.throw(TypeError, /BENCH_TURN_WARMUP_MS must be an integer from 0 to 60000/);
      expect(() => withEnv({ BENCH_TURN_WARMUP_MS: '2.5' })).to.throw(TypeError, /BENCH_TURN_WARMUP_MS/);
      expect(() => withEnv({ BENCH_SLICE_S: '0' })).to.throw(TypeError, /BENCH_SLICE_S must be an integer from 1/);
    });

    it('runs all five parts by default, the instruction count without failing where valgrind is missing', () => {
      const config = withEnv({});
      expect([...config.parts]).to.deep.equal(['http', 'settle', 'metering', 'memory', 'instructions']);
      expect(config.instructionsRequired).to.equal(false);
      expect(config.instructionApps).to.deep.equal(INSTRUCTION_APPS);
      expect(withEnv({ BENCH_PARTS: 'http, instructions' }).instructionsRequired).to.equal(true);
      expect(() => withEnv({ BENCH_PARTS: 'http,cpu' })).to.throw(TypeError, /BENCH_PARTS must list http, settle, metering, memory, instructions, got "cpu"/);
    });

    it('counts bare Koa with any chosen apps (the ratios need it) and refuses unknown app ids', () => {
      expect(withEnv({ BENCH_INSTRUCTION_APPS: 'chain-redis,rlf-redis' }).instructionApps).to.deep.equal(['bare', 'chain-redis', 'rlf-redis']);
      expect(withEnv({ BENCH_INSTRUCTION_APPS: 'chain-memory,bare' }).instructionApps).to.deep.equal(['bare', 'chain-memory']);
      expect(() => withEnv({ BENCH_INSTRUCTION_APPS: 'chain-memory,nginx' })).to.throw(TypeError, /BENCH_INSTRUCTION_APPS must list app ids .*got "nginx"/);
    });
  });

  describe('callgrind dumps', () => {
    const dump = (instructions: number) => `# callgrind format\nversion: 1\npart: 1\n\nevents: Ir\nsummary: ${instructions}\n\nob=(1) /usr/bin/node\n`;

    it('reads the instruction total of a dump', () => {
      expect(dumpInstructions(dump(620145537))).to.equal(620145537);
      expect(dumpInstructions('events: Ir\ntotals: 13409\n')).to.equal(13409);
      expect(() => dumpInstructions('events: Ir\n')).to.throw(/without a summary/);
    });

    it('divides one dump by the requests, main thread (01) apart from the sum over threads, ignoring the other dumps', () => {
      const files = [
        { name: 'out.4242.1-01', text: dump(300_000_000) },
        { name: 'out.4242.1-02', text: dump(90_000_000) },
        { name: 'out.4242.1-11', text: dump(30_000_000) },
        // Written at exit (start-up and shutdown included) and by a later dump: not part of the count.
        { name: 'out.4242-01', text: dump(9_000_000_000) },
        { name: 'out.4242.2-01', text: dump(5_000_000) },
      ];
      expect(countFromDumps(files, 1, 3000)).to.deep.equal({ mainThread: 100_000, allThreads: 140_000 });
    });

    it('refuses a dump without the main thread rather than reporting a partial count', () => {
      expect(() => countFromDumps([{ name: 'out.1.1-02', text: dump(1000) }], 1, 10)).to.throw(/no file for the main thread/);
    });
  });
});
