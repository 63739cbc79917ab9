// The native bulk transport's own C++ test (native/transport/test/link_test.cc): compiled here
// against native/transport/transport.cc and run, then run again under valgrind's memcheck (leaks
// and invalid accesses are errors) where valgrind is installed. TCP and shared memory, payloads
// from 0 bytes to 136 MiB (1 MiB under valgrind), queued messages at close, garbage on the wire.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { nativeBulkEnabled, transportAddon } from '../../src/rpc/native-link.js';
import { packageRoot } from '../../src/tensor/native.js';

const native = join(packageRoot(), 'native');
const has = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;

let dir: string;
let binary: string;
test.before(() => {
  dir = mkdtempSync(join(tmpdir(), 'psrpc-transport-'));
  binary = join(dir, 'link_test');
  const cxx = process.env.CXX ?? 'g++';
  const r = spawnSync(cxx, ['-std=c++17', '-O1', '-g', '-pthread', '-Wall', '-Wextra', '-Werror', `-I${join(native, 'include')}`,
    join(native, 'transport', 'transport.cc'), join(native, 'transport', 'test', 'link_test.cc'), '-o', binary], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`cannot build the transport test with ${cxx}: ${r.stderr || r.error?.message}`);
});
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

test('the transport addon is built by npm install and loads (else every other transport test would pass on the JS fallback)', (t) => {
  t.truthy(transportAddon(), 'native/build/Release/psrpc_transport.node loads');
  t.is(nativeBulkEnabled(), process.env.PSRPC_NATIVE_BULK !== '0');
});

test('links echo every byte over TCP and shared memory, report queued messages at close, and reject garbage', (t) => {
  const r = spawnSync(binary, ['2', String(136 << 20)], { encoding: 'utf8' }); // 136 MiB: above the arena's kept 128 MiB
  t.is(r.status, 0, r.stderr);
  t.regex(r.stdout, /all checks passed/);
});

/** Builds link_test with `flags` into the test folder; null when this compiler cannot (no sanitizer runtime). */
function build(name: string, flags: string[]): string | null {
  const out = join(dir, name);
  const r = spawnSync(process.env.CXX ?? 'g++', ['-std=c++17', '-O1', '-g', '-pthread', ...flags, `-I${join(native, 'include')}`,
    join(native, 'transport', 'transport.cc'), join(native, 'transport', 'test', 'link_test.cc'), '-o', out], { encoding: 'utf8' });
  return r.status === 0 ? out : null;
}
const canSanitize = spawnSync('sh', ['-c', `echo 'int main(){}' | ${process.env.CXX ?? 'g++'} -x c++ -fsanitize=address,undefined - -o /dev/null`]).status === 0;
const sanitized = canSanitize ? test : test.skip;

sanitized('the same under AddressSanitizer and UndefinedBehaviorSanitizer, and ThreadSanitizer (skipped without their runtimes)', (t) => {
  const asan = build('link_test_asan', ['-fsanitize=address,undefined', '-fno-sanitize-recover=undefined']);
  t.truthy(asan, 'builds with -fsanitize=address,undefined');
  const r1 = spawnSync(asan!, ['2', String(8 << 20)], { encoding: 'utf8' });
  t.is(r1.status, 0, r1.stderr);
  t.notRegex(r1.stderr, /runtime error|AddressSanitizer/);
  const tsan = build('link_test_tsan', ['-fsanitize=thread']);
  t.truthy(tsan, 'builds with -fsanitize=thread');
  const r2 = spawnSync(tsan!, ['1', String(1 << 20)], { encoding: 'utf8' });
  t.is(r2.status, 0, r2.stderr);
  t.notRegex(r2.stderr, /ThreadSanitizer/);
});

const memcheck = has('valgrind') ? test : test.skip;
memcheck('the same under valgrind: no invalid access, no leak (skipped where valgrind is not installed)', (t) => {
  const r = spawnSync('valgrind', ['--error-exitcode=9', '--leak-check=full', '--errors-for-leak-kinds=definite,indirect,possible', '-q', binary, '1', String(1 << 20)], { encoding: 'utf8' });
  t.is(r.status, 0, r.stderr);
  t.regex(r.stdout, /all checks passed/);
  t.notRegex(r.stderr, /Invalid (read|write)|definitely lost|uninitialised/);
});
