// Unit tests for parseRpmReply (lib/cache/rpm.ts): the RPM scripts' one-string answer, read without a regular expression.
import { expect } from 'chai';
import { parseRpmReply } from '../../lib/cache/rpm.js';

describe('parseRpmReply', () => {
  it('reads the outcome, both counts and the server time', () => {
    expect(parseRpmReply('0 12 7 1767225600123')).to.deep.equal([0, 12, 7, 1767225600123]);
    expect(parseRpmReply('2 0 1000000001 0')).to.deep.equal([2, 0, 1000000001, 0]);
    expect(parseRpmReply('1 9007199254740991 1 1')).to.deep.equal([1, Number.MAX_SAFE_INTEGER, 1, 1]);
  });

  it('refuses anything but four space-separated safe integers', () => {
    for (const reply of [
      '',
      ' ',
      '0 1 2',
      '0 1 2 3 4',
      '0 1 2 3 ',
      ' 0 1 2 3',
      '0  1 2 3',
      '0 1 2 -3',
      '0 1 2 3.5',
      '0 1 2 3\n',
      '0 1 2 x',
      '0 9007199254740992 1 1', // past 2^53 − 1: not exact
      '0 12345678901234567 1 1', // 17 digits
    ]) {
      expect(parseRpmReply(reply), JSON.stringify(reply)).to.equal(null);
    }
    for (const reply of [null, undefined, 0, ['0', '1', '2', '3'], Buffer.from('0 1 2 3')]) {
      expect(parseRpmReply(reply), String(reply)).to.equal(null);
    }
  });
});
