// Makes every test of the calling suite fail if it leaves an unhandled promise rejection behind.

/** Lets pending promise callbacks and the unhandled-rejection report (a macrotask later) run. */
const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Call inside a describe(): installs the listener for the suite and checks after each test. */
export function failOnUnhandledRejections(): void {
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => void unhandled.push(reason);
  before(() => process.on('unhandledRejection', onUnhandled));
  after(() => process.off('unhandledRejection', onUnhandled));
  beforeEach(() => {
    unhandled.length = 0;
  });
  afterEach(async () => {
    await turn();
    await turn();
    if (unhandled.length > 0) throw new Error(`unhandled rejections: ${unhandled.map(String).join('; ')}`);
  });
}
