// A strict JSON reader for configuration files: the same grammar as JSON.parse, but a syntax error
// names its line and column, and a key written twice in one object is an error instead of the
// silent "last one wins" of JSON.parse (a topology with two "shards" blocks is a mistake).
//
// Node 20's JSON.parse reports neither the position nor duplicate keys, hence this small
// recursive-descent parser. Strings and numbers are decoded by JSON.parse on their own token, so
// escapes and number syntax follow the standard exactly.

/** A syntax error with its 1-based line and column. */
export class JsonSourceError extends SyntaxError {
  override readonly name = 'JsonSourceError';
  constructor(readonly reason: string, readonly line: number, readonly column: number) {
    super(`${reason} at line ${line} column ${column}`);
  }
}

const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
// A JSON string: no raw control characters, escapes limited to the standard set.
const STRING = /"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/y;

export function parseJsonSource(text: string): unknown {
  let i = 0;

  const fail = (reason: string, at = i): never => {
    let line = 1;
    let col = 1;
    for (let k = 0; k < at && k < text.length; k++) {
      if (text[k] === '\n') {
        line++;
        col = 1;
      } else col++;
    }
    throw new JsonSourceError(reason, line, col);
  };
  const describe = (at: number): string => (at >= text.length ? 'end of input' : `'${text[at]}'`);
  const skip = () => {
    while (i < text.length && ' \t\r\n'.includes(text[i]!)) i++;
  };
  const expect = (c: string, what: string) => {
    skip();
    if (text[i] !== c) fail(`expected ${what}, found ${describe(i)}`);
    i++;
  };

  const string = (): string => {
    STRING.lastIndex = i;
    const m = STRING.exec(text);
    if (!m) {
      // Find the offending character for a precise location.
      let k = i + 1;
      while (k < text.length && text[k] !== '"') {
        const c = text.charCodeAt(k);
        if (c < 0x20) fail('control character in string', k);
        if (text[k] === '\\') {
          if (!/["\\/bfnrtu]/.test(text[k + 1] ?? '')) fail('bad escape in string', k);
          if (text[k + 1] === 'u' && !/^[0-9a-fA-F]{4}$/.test(text.slice(k + 2, k + 6))) fail('bad \\u escape in string', k);
          k++;
        }
        k++;
      }
      fail('unterminated string', i);
    }
    i += m![0].length;
    return JSON.parse(m![0]) as string;
  };

  const value = (depth: number): unknown => {
    if (depth > 200) fail('nesting too deep');
    skip();
    const c = text[i];
    if (c === '{') {
      i++;
      const out: Record<string, unknown> = {};
      skip();
      if (text[i] === '}') {
        i++;
        return out;
      }
      for (;;) {
        skip();
        if (text[i] !== '"') fail(`expected a key in double quotes, found ${describe(i)}`);
        const at = i;
        const key = string();
        if (Object.prototype.hasOwnProperty.call(out, key)) fail(`duplicate key '${key}'`, at);
        expect(':', "':'");
        const v = value(depth + 1);
        Object.defineProperty(out, key, { value: v, enumerable: true, writable: true, configurable: true });
        skip();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === '}') {
          i++;
          return out;
        }
        fail(`expected ',' or '}', found ${describe(i)}`);
      }
    }
    if (c === '[') {
      i++;
      const out: unknown[] = [];
      skip();
      if (text[i] === ']') {
        i++;
        return out;
      }
      for (;;) {
        out.push(value(depth + 1));
        skip();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === ']') {
          i++;
          return out;
        }
        fail(`expected ',' or ']', found ${describe(i)}`);
      }
    }
    if (c === '"') return string();
    for (const [word, v] of [['true', true], ['false', false], ['null', null]] as const) {
      if (text.startsWith(word, i)) {
        i += word.length;
        return v;
      }
    }
    NUMBER.lastIndex = i;
    const m = NUMBER.exec(text);
    if (m) {
      i += m[0].length;
      return Number(m[0]);
    }
    return fail(`unexpected ${describe(i)}`);
  };

  // A byte-order mark is not JSON but editors write it; accept it.
  if (text.charCodeAt(0) === 0xfeff) i = 1;
  const v = value(0);
  skip();
  if (i < text.length) fail(`unexpected ${describe(i)} after the end of the value`);
  return v;
}
