// The example gateway over HTTP on its embedded default: a SQLite file, the memory cache and the bundled mock upstream.
import { accessScenarios } from './gateway-access-scenarios.js';
import { billingScenarios } from './gateway-billing-scenarios.js';
import { edgeScenarios } from './gateway-edge-scenarios.js';
import { limitScenarios } from './gateway-limit-scenarios.js';
import { meteringScenarios } from './gateway-metering-scenarios.js';
import { METERING_ENV, startHarness, type GatewayHarness } from './gateway-harness.js';

describe('example gateway e2e: embedded default (SQLite + memory cache)', function () {
  let harness: GatewayHarness;

  before(async () => {
    harness = await startHarness({});
  });

  after(async () => {
    await harness?.close();
  });

  describe('billing', () => billingScenarios(() => harness));
  describe('access', () => accessScenarios(() => harness));
  describe('limits', () => limitScenarios(() => harness));
  describe('edges', () => edgeScenarios(() => harness));
});

describe('example gateway e2e: live stream metering on the embedded default', function () {
  this.timeout(60_000);
  let harness: GatewayHarness;

  before(async () => {
    harness = await startHarness({ ...METERING_ENV });
  });

  after(async () => {
    await harness?.close();
  });

  meteringScenarios(() => harness);
});
