// The strict JSON reader: same values as JSON.parse, errors with line and column, duplicate keys refused.
import test from 'ava';
import { JsonSourceError, parseJsonSource } from '../../src/launch/json-source.js';

const valid = [
  '{}', '[]', '0', '-1.5e3', '"a\\nb\\u00e9"', 'true', 'null',
  '{"a": [1, 2, {"b": null}], "c": "d", "e": false, "f": -0.25}',
  '\n  {\n "x" : [ ]\n }\n',
];

for (const text of valid) {
  test(`parses like JSON.parse: ${JSON.stringify(text)}`, (t) => {
    t.deepEqual(parseJsonSource(text), JSON.parse(text));
  });
}

const invalid: Array<[string, number, number, RegExp]> = [
  ['{"a": 1,\n  "b": 2,\n}', 3, 1, /expected a key/],
  ['{"a" 1}', 1, 6, /expected ':'/],
  ['[1, 2', 1, 6, /end of input/],
  ['{"a": tru}', 1, 7, /unexpected 't'/],
  ['{"a": "x\ty"}', 1, 9, /control character/],
  ['{"a": 1} x', 1, 10, /after the end/],
  ['', 1, 1, /end of input/],
  ['{"a": 01}', 1, 8, /expected ',' or '}'/],
  ['{"a": "unterminated', 1, 7, /unterminated string/],
];

for (const [text, line, column, reason] of invalid) {
  test(`a syntax error names its line and column: ${JSON.stringify(text)}`, (t) => {
    const e = t.throws(() => parseJsonSource(text), { instanceOf: JsonSourceError });
    t.regex(e!.reason, reason);
    t.is(e!.line, line);
    t.is(e!.column, column);
    t.regex(e!.message, new RegExp(`at line ${line} column ${column}$`));
  });
}

test('a key written twice in one object is an error at the second one', (t) => {
  const e = t.throws(() => parseJsonSource('{\n  "shards": {},\n  "shards": {}\n}'), { instanceOf: JsonSourceError });
  t.regex(e!.reason, /duplicate key 'shards'/);
  t.is(e!.line, 3);
  t.is(e!.column, 3);
  // The same key in two different objects is fine.
  t.deepEqual(parseJsonSource('[{"a": 1}, {"a": 2}]'), [{ a: 1 }, { a: 2 }]);
});

test('__proto__ is an ordinary key, not a prototype change', (t) => {
  const v = parseJsonSource('{"__proto__": {"polluted": 1}}') as Record<string, unknown>;
  t.deepEqual(Object.keys(v), ['__proto__']);
  t.is(({} as Record<string, unknown>).polluted, undefined);
});
