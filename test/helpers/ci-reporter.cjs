// Mocha reporter: the usual spec output, plus the run's totals written as JSON to
// $MOCHA_JSON_RESULTS so that .ci/run can print the "N passed, M failed" line CI reads.
'use strict';
const fs = require('node:fs');
const { Spec } = require('mocha').reporters;
const { EVENT_RUN_END } = require('mocha').Runner.constants;

class CiReporter extends Spec {
  constructor(runner, options) {
    super(runner, options);
    const target = process.env.MOCHA_JSON_RESULTS;
    if (!target) return;
    runner.once(EVENT_RUN_END, () => {
      fs.writeFileSync(target, JSON.stringify({ stats: this.stats }));
    });
  }
}
module.exports = CiReporter;
