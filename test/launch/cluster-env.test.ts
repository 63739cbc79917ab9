// clusterPlace: every scheduler's variables, their precedence, PSRPC_* overrides, roles and names,
// Slurm's host-list syntax, and one clear line naming the variable for every malformed value.
import test from 'ava';
import { ClusterEnvError, clusterPlace, DEFAULT_MASTER_PORT, firstHost, HostlistError, MAX_HOSTS, parseHostlist } from '../../src/launch/cluster-env.js';

// ---- the sources, as each scheduler sets them ---------------------------------------------------

/** What torchrun (static rendezvous) gives worker 2 of 4: its agent hosts the store at MASTER_PORT. */
const TORCHRUN = {
  LOCAL_RANK: '0', RANK: '2', GROUP_RANK: '2', ROLE_RANK: '2', ROLE_NAME: 'default', LOCAL_WORLD_SIZE: '1', WORLD_SIZE: '4',
  GROUP_WORLD_SIZE: '4', ROLE_WORLD_SIZE: '4', MASTER_ADDR: 'node0', MASTER_PORT: '29500', TORCHELASTIC_RESTART_COUNT: '0',
  TORCHELASTIC_MAX_RESTARTS: '0', TORCHELASTIC_RUN_ID: 'none', TORCHELASTIC_USE_AGENT_STORE: 'True',
};
/** training-operator v1 (PyTorchJob with a Master and 3 Workers), Worker 0's pod. */
const PYTORCHJOB = {
  PYTHONUNBUFFERED: '1', MASTER_PORT: '23456', PET_MASTER_PORT: '23456', MASTER_ADDR: 'mnist-master-0', PET_MASTER_ADDR: 'mnist-master-0',
  WORLD_SIZE: '4', RANK: '1', PET_NODE_RANK: '1', PET_NNODES: '4', KUBERNETES_SERVICE_HOST: '10.96.0.1',
};
/** Kubeflow Trainer v2 (TrainJob): PET_* only. */
const TRAINJOB = { PET_NNODES: '3', PET_NPROC_PER_NODE: 'auto', PET_NODE_RANK: '2', PET_MASTER_ADDR: 'mnist-node-0-0.mnist', PET_MASTER_PORT: '29500', JOB_COMPLETION_INDEX: '2' };
/** srun --ntasks=4, task 3 on the second node. */
const SLURM = {
  SLURM_JOB_ID: '200505', SLURM_JOB_NODELIST: 'node[01-02]', SLURM_NODELIST: 'node[01-02]', SLURM_STEP_NODELIST: 'node[01-02]', SLURM_NTASKS: '4',
  SLURM_NPROCS: '4', SLURM_PROCID: '3', SLURM_LOCALID: '1', SLURM_NODEID: '1', SLURM_NNODES: '2', SLURMD_NODENAME: 'node02',
};
/** An Indexed Job's pod 1 with the manifest's psrpc variables (docs/CLUSTERS.md). */
const INDEXED = { JOB_COMPLETION_INDEX: '1', PSRPC_WORLD_SIZE: '3', PSRPC_MASTER: 'train-0.train:29500', PSRPC_SERVERS: '1', HOSTNAME: 'train-1' };

test('torchrun: RANK, WORLD_SIZE, MASTER_ADDR, LOCAL_RANK; the agent store keeps MASTER_PORT, the rendezvous takes the next port', (t) => {
  const p = clusterPlace(TORCHRUN, { servers: 1 })!;
  t.like(p, { source: 'torchrun', rank: 2, worldSize: 4, master: 'node0:29501', localRank: 0, servers: 1, role: 'trainer', index: 1, name: 'trainer2' });
  t.deepEqual(p.from, { rank: 'RANK', worldSize: 'WORLD_SIZE', master: 'MASTER_ADDR:MASTER_PORT+1', servers: 'default 1' });
});

test('torchrun without its agent store (plain env://, psrun) uses MASTER_PORT itself', (t) => {
  const p = clusterPlace({ RANK: '0', WORLD_SIZE: '3', MASTER_ADDR: '127.0.0.1', MASTER_PORT: '1234', PSRPC_SERVERS: '1' })!;
  t.like(p, { source: 'torchrun', rank: 0, worldSize: 3, master: '127.0.0.1:1234', role: 'server', index: 0, name: 'ps0' });
  t.is(p.localRank, undefined);
});

test('kubeflow PyTorchJob (v1): the plain variables it sets, labelled kubeflow by its PET_* ones', (t) => {
  t.like(clusterPlace(PYTORCHJOB, { servers: 1 }), { source: 'kubeflow', rank: 1, worldSize: 4, master: 'mnist-master-0:23456', role: 'trainer', name: 'trainer1' });
});

test('kubeflow Trainer (v2): PET_NODE_RANK, PET_NNODES, PET_MASTER_ADDR, PET_MASTER_PORT only', (t) => {
  const p = clusterPlace(TRAINJOB)!;
  t.like(p, { source: 'kubeflow', rank: 2, worldSize: 3, master: 'mnist-node-0-0.mnist:29500', servers: 0, role: 'trainer', name: 'trainer3' });
  t.deepEqual(p.from, { rank: 'PET_NODE_RANK', worldSize: 'PET_NNODES', master: 'PET_MASTER_ADDR:PET_MASTER_PORT', servers: 'default 0' });
});

test('torchrun started inside a Kubeflow pod: torchrun\'s per-process variables win over the PET_* ones', (t) => {
  const p = clusterPlace({ ...TRAINJOB, ...TORCHRUN })!;
  t.like(p, { source: 'torchrun', rank: 2, worldSize: 4, master: 'node0:29501' });
});

test('slurm: SLURM_PROCID, SLURM_NTASKS, the first host of the step\'s node list, the default port, SLURM_LOCALID', (t) => {
  const p = clusterPlace({ ...SLURM, PSRPC_SERVERS: '1' })!;
  t.like(p, { source: 'slurm', rank: 3, worldSize: 4, master: `node01:${DEFAULT_MASTER_PORT}`, localRank: 1, servers: 1, role: 'trainer', index: 2, name: 'trainer3' });
  t.is(p.from.master, 'SLURM_STEP_NODELIST:default 29500');
});

test('slurm: the step\'s node list before the job\'s, the job\'s before the old name; MASTER_PORT and MASTER_ADDR when exported', (t) => {
  const base = { SLURM_PROCID: '0', SLURM_NTASKS: '2' };
  t.is(clusterPlace({ ...base, SLURM_NODELIST: 'old[1-2]' })!.master, 'old1:29500');
  t.is(clusterPlace({ ...base, SLURM_NODELIST: 'old[1-2]', SLURM_JOB_NODELIST: 'job[3-4]' })!.master, 'job3:29500');
  t.is(clusterPlace({ ...base, SLURM_JOB_NODELIST: 'job[3-4]', SLURM_STEP_NODELIST: 'step7' })!.master, 'step7:29500');
  t.is(clusterPlace({ ...base, SLURM_JOB_NODELIST: 'job[3-4]', MASTER_PORT: '4000' })!.master, 'job3:4000');
  t.is(clusterPlace({ ...base, SLURM_JOB_NODELIST: 'job[3-4]', MASTER_ADDR: 'login1' })!.master, 'login1:29500');
  t.is(clusterPlace({ SLURM_PROCID: '1', SLURM_NPROCS: '2', SLURM_NODELIST: 'a' })!.worldSize, 2, 'SLURM_NPROCS, the old name of SLURM_NTASKS');
});

test('kubernetes Indexed Job: JOB_COMPLETION_INDEX with PSRPC_WORLD_SIZE and PSRPC_MASTER', (t) => {
  const p = clusterPlace(INDEXED)!;
  t.like(p, { source: 'kubernetes', rank: 1, worldSize: 3, master: 'train-0.train:29500', servers: 1, role: 'trainer', index: 0, name: 'trainer1' });
  t.deepEqual(p.from, { rank: 'JOB_COMPLETION_INDEX', worldSize: 'PSRPC_WORLD_SIZE', master: 'PSRPC_MASTER', servers: 'PSRPC_SERVERS' });
  t.like(clusterPlace({ JOB_COMPLETION_INDEX: '0', WORLD_SIZE: '2', MASTER_ADDR: 'train-0.train', PSRPC_SERVERS: '1' }), { source: 'kubernetes', master: 'train-0.train:29500', role: 'server', name: 'ps0' });
  t.is(clusterPlace({ JOB_COMPLETION_INDEX: '0', WORLD_SIZE: '2', MASTER_ADDR: 'train-0.train', MASTER_PORT: '7000' })!.master, 'train-0.train:7000');
});

test('psrpc\'s own variables alone', (t) => {
  t.like(clusterPlace({ PSRPC_RANK: '0', PSRPC_WORLD_SIZE: '2', PSRPC_MASTER: '10.0.0.5:29400', PSRPC_SERVERS: '1' }), { source: 'psrpc', rank: 0, worldSize: 2, master: '10.0.0.5:29400', role: 'server', name: 'ps0' });
});

test('no cluster environment is null (PSRPC_SERVERS, PSRPC_NAME or a lone MASTER_ADDR place nothing)', (t) => {
  t.is(clusterPlace({}), null);
  t.is(clusterPlace({ PATH: '/bin', HOME: '/root', PSRPC_SERVERS: '1', PSRPC_NAME: 'x', MASTER_ADDR: 'h', MASTER_PORT: '1', WORLD_SIZE: '2' }), null);
  t.is(clusterPlace({ RANK: '' }), null, 'an empty value counts as unset');
});

// ---- precedence --------------------------------------------------------------------------------

test('precedence: torchrun before kubeflow before slurm before kubernetes', (t) => {
  const k8s = { JOB_COMPLETION_INDEX: '0', WORLD_SIZE: '4', MASTER_ADDR: 'k8s' };
  t.is(clusterPlace({ ...k8s, ...SLURM })!.source, 'slurm');
  t.is(clusterPlace({ ...k8s, ...SLURM, ...TRAINJOB })!.source, 'kubeflow');
  t.is(clusterPlace({ ...k8s, ...SLURM, ...TRAINJOB, ...TORCHRUN })!.source, 'torchrun');
  // under srun, variables exported by hand (RANK=$SLURM_PROCID ...) are torchrun's env:// and win
  t.like(clusterPlace({ ...SLURM, RANK: '3', WORLD_SIZE: '4', MASTER_ADDR: 'node01', MASTER_PORT: '6000' }), { source: 'torchrun', master: 'node01:6000' });
});

test('PSRPC_RANK, PSRPC_WORLD_SIZE, PSRPC_MASTER and PSRPC_MASTER_PORT override every source', (t) => {
  const over = { PSRPC_RANK: '1', PSRPC_WORLD_SIZE: '2', PSRPC_MASTER: 'here:1111' };
  for (const env of [TORCHRUN, PYTORCHJOB, TRAINJOB, SLURM, INDEXED]) {
    const p = clusterPlace({ ...env, ...over })!;
    t.like(p, { rank: 1, worldSize: 2, master: 'here:1111' });
    t.deepEqual([p.from.rank, p.from.worldSize, p.from.master], ['PSRPC_RANK', 'PSRPC_WORLD_SIZE', 'PSRPC_MASTER']);
    t.not(p.source, 'psrpc', 'the source is still the scheduler found');
  }
  t.is(clusterPlace({ ...SLURM, PSRPC_MASTER_PORT: '5000' })!.master, 'node01:5000');
  t.is(clusterPlace({ ...TORCHRUN, PSRPC_MASTER_PORT: '5000' })!.master, 'node0:5000', 'instead of the port after the agent store');
  t.is(clusterPlace({ ...SLURM, PSRPC_MASTER_PORT: '5000', PSRPC_MASTER: 'x:6' })!.master, 'x:6', 'PSRPC_MASTER beats PSRPC_MASTER_PORT');
  t.is(clusterPlace({ ...SLURM, PSRPC_RANK: '0' })!.rank, 0, 'one field alone');
});

// ---- roles and names -----------------------------------------------------------------------------

test('roles from the rank and PSRPC_SERVERS (else the caller\'s default), names like psrun\'s', (t) => {
  const at = (rank: number, extra: Record<string, string> = {}, servers?: number) =>
    clusterPlace({ PSRPC_RANK: String(rank), PSRPC_WORLD_SIZE: '5', PSRPC_MASTER: 'm:1', ...extra }, servers === undefined ? {} : { servers })!;
  t.deepEqual([0, 1, 2, 3, 4].map((r) => at(r, { PSRPC_SERVERS: '2' })).map((p) => `${p.role}:${p.index}:${p.name}`),
    ['server:0:ps0', 'server:1:ps1', 'trainer:0:trainer1', 'trainer:1:trainer2', 'trainer:2:trainer3']);
  t.like(at(0), { servers: 0, role: 'trainer', name: 'trainer1' }, 'no servers by default');
  t.like(at(0, {}, 1), { servers: 1, role: 'server', name: 'ps0' });
  t.like(at(0, { PSRPC_SERVERS: '0' }, 1), { servers: 0, role: 'trainer' }, 'PSRPC_SERVERS beats the default');
  t.like(at(3, { PSRPC_SERVERS: '2', PSRPC_ROLE: 'trainer', PSRPC_NAME: 'worker-b.3' }), { role: 'trainer', name: 'worker-b.3' });
  t.like(at(1, { PSRPC_SERVERS: '2', PSRPC_ROLE: 'server' }), { role: 'server', name: 'ps1' });
  t.throws(() => at(0, { PSRPC_ROLE: 'server' }), { instanceOf: ClusterEnvError, message: "PSRPC_ROLE='server' contradicts rank 0 (PSRPC_RANK='0'): no rank is a server with PSRPC_SERVERS (unset: 0)" });
});

// ---- errors: one line naming the variable and its value -------------------------------------------

const bad: Array<[string, Record<string, string>, RegExp, string]> = [
  ['a non-integer rank', { ...SLURM, SLURM_PROCID: '3a' }, /^SLURM_PROCID='3a' is not a non-negative integer$/, 'SLURM_PROCID'],
  ['a negative rank', { RANK: '-1', WORLD_SIZE: '2', MASTER_ADDR: 'h', MASTER_PORT: '1' }, /^RANK='-1' is not a non-negative integer$/, 'RANK'],
  ['a zero world size', { ...TORCHRUN, WORLD_SIZE: '0' }, /^WORLD_SIZE='0' is not a positive integer$/, 'WORLD_SIZE'],
  ['a fractional world size', { ...INDEXED, PSRPC_WORLD_SIZE: '2.5' }, /^PSRPC_WORLD_SIZE='2.5' is not a positive integer$/, 'PSRPC_WORLD_SIZE'],
  ['rank >= world size', { ...SLURM, SLURM_NTASKS: '3' }, /^SLURM_PROCID='3' is outside the world of SLURM_NTASKS='3' \(ranks 0\.\.2\)$/, 'SLURM_PROCID'],
  ['rank >= world size (index)', { ...INDEXED, JOB_COMPLETION_INDEX: '3' }, /^JOB_COMPLETION_INDEX='3' is outside the world of PSRPC_WORLD_SIZE='3'/, 'JOB_COMPLETION_INDEX'],
  ['a bad PSRPC_MASTER', { ...INDEXED, PSRPC_MASTER: 'train-0.train' }, /^PSRPC_MASTER='train-0.train' is not host:port$/, 'PSRPC_MASTER'],
  ['a PSRPC_MASTER port out of range', { ...INDEXED, PSRPC_MASTER: 'h:70000' }, /^PSRPC_MASTER='h:70000' is not host:port \(port must be in \[1, 65535\], got '70000'\)$/, 'PSRPC_MASTER'],
  ['a PSRPC_MASTER with a bad host', { ...INDEXED, PSRPC_MASTER: 'a b:1' }, /^PSRPC_MASTER='a b:1' is not host:port \(bad host 'a b'\)$/, 'PSRPC_MASTER'],
  ['an IPv6 literal', { ...INDEXED, PSRPC_MASTER: '[::1]:29500' }, /^PSRPC_MASTER='\[::1\]:29500' is not host:port/, 'PSRPC_MASTER'],
  ['a MASTER_ADDR with a port', { ...TORCHRUN, MASTER_ADDR: 'node0:29500' }, /^MASTER_ADDR='node0:29500' is not a host name or IPv4 address \(a port belongs/, 'MASTER_ADDR'],
  ['a bad MASTER_PORT', { ...PYTORCHJOB, MASTER_PORT: 'http' }, /^MASTER_PORT='http' is not a port in \[1, 65535\]$/, 'MASTER_PORT'],
  ['a MASTER_PORT of 0', { ...SLURM, MASTER_PORT: '0' }, /^MASTER_PORT='0' is not a port in \[1, 65535\]$/, 'MASTER_PORT'],
  ['no port after the agent store', { ...TORCHRUN, MASTER_PORT: '65535' }, /^MASTER_PORT='65535' leaves no port for the rendezvous .*PSRPC_MASTER_PORT/, 'MASTER_PORT'],
  ['a bad PSRPC_MASTER_PORT', { ...SLURM, PSRPC_MASTER_PORT: '1e3' }, /^PSRPC_MASTER_PORT='1e3' is not a port/, 'PSRPC_MASTER_PORT'],
  ['a malformed Slurm node list', { ...SLURM, SLURM_STEP_NODELIST: 'node[01-' }, /^SLURM_STEP_NODELIST='node\[01-' is not a Slurm host list: the '\[' at character 5 is never closed$/, 'SLURM_STEP_NODELIST'],
  ['a bad LOCAL_RANK', { ...TORCHRUN, LOCAL_RANK: 'x' }, /^LOCAL_RANK='x' is not a non-negative integer$/, 'LOCAL_RANK'],
  ['a bad SLURM_LOCALID', { ...SLURM, SLURM_LOCALID: '-2' }, /^SLURM_LOCALID='-2' is not a non-negative integer$/, 'SLURM_LOCALID'],
  ['a bad PSRPC_SERVERS', { ...SLURM, PSRPC_SERVERS: 'one' }, /^PSRPC_SERVERS='one' is not a non-negative integer$/, 'PSRPC_SERVERS'],
  ['servers filling the world', { ...SLURM, PSRPC_SERVERS: '4' }, /^PSRPC_SERVERS='4' leaves no trainer in a world of SLURM_NTASKS='4'/, 'PSRPC_SERVERS'],
  ['a bad role', { ...SLURM, PSRPC_ROLE: 'worker' }, /^PSRPC_ROLE='worker' is not 'server' or 'trainer'$/, 'PSRPC_ROLE'],
  ['a role contradicting the rank', { ...SLURM, PSRPC_SERVERS: '1', PSRPC_ROLE: 'server' }, /^PSRPC_ROLE='server' contradicts rank 3 \(SLURM_PROCID='3'\): ranks 0\.\.0 are the servers with PSRPC_SERVERS='1'$/, 'PSRPC_ROLE'],
  ['a server role without servers', { ...TRAINJOB, PSRPC_ROLE: 'server' }, /^PSRPC_ROLE='server' contradicts rank 2 \(PET_NODE_RANK='2'\): ranks 0\.\.0 are the servers with PSRPC_SERVERS \(unset: 1\)$/, 'PSRPC_ROLE'],
  ['a trainer role on a server rank', { ...INDEXED, JOB_COMPLETION_INDEX: '0', PSRPC_ROLE: 'trainer' }, /^PSRPC_ROLE='trainer' contradicts rank 0/, 'PSRPC_ROLE'],
  ['a bad name', { ...SLURM, PSRPC_NAME: '3rd trainer' }, /^PSRPC_NAME='3rd trainer' is not a worker name/, 'PSRPC_NAME'],
  ['several processes per Kubeflow pod', { ...TRAINJOB, PET_NPROC_PER_NODE: '4' }, /^PET_NPROC_PER_NODE='4' asks for several processes per pod/, 'PET_NPROC_PER_NODE'],
  ['an elastic Kubeflow job', { ...TRAINJOB, PET_NNODES: '1:4' }, /^PET_NNODES='1:4' is an elastic range/, 'PET_NNODES'],
  ['torchrun without WORLD_SIZE', { RANK: '1', MASTER_ADDR: 'h', MASTER_PORT: '1' }, /^torchrun: no world size: set WORLD_SIZE or PSRPC_WORLD_SIZE$/, 'WORLD_SIZE'],
  ['torchrun without MASTER_PORT', { RANK: '1', WORLD_SIZE: '2', MASTER_ADDR: 'h' }, /^torchrun: no rendezvous port: set MASTER_PORT or PSRPC_MASTER_PORT$/, 'MASTER_PORT'],
  ['torchrun without MASTER_ADDR', { RANK: '1', WORLD_SIZE: '2', MASTER_PORT: '1' }, /^torchrun: no rendezvous address: set MASTER_ADDR and MASTER_PORT or PSRPC_MASTER$/, 'MASTER_ADDR'],
  ['an elastic PyTorchJob without ranks', { PET_NNODES: '2', PET_RDZV_ENDPOINT: 'j-worker-0:29400' }, /^kubeflow: no rank: set RANK or PET_NODE_RANK \(an elastic PyTorchJob.*needs torchrun\) or PSRPC_RANK$/, 'RANK'],
  ['an Indexed Job without a world size', { JOB_COMPLETION_INDEX: '1', PSRPC_MASTER: 'j-0.s:1' }, /^kubernetes: no world size: set PSRPC_WORLD_SIZE or WORLD_SIZE/, 'PSRPC_WORLD_SIZE'],
  ['an Indexed Job without a master', { JOB_COMPLETION_INDEX: '1', PSRPC_WORLD_SIZE: '3' }, /^kubernetes: no rendezvous address: set PSRPC_MASTER \(e\.g\. <job>-0\.<service>:29500\) or MASTER_ADDR$/, 'PSRPC_MASTER'],
  ['srun without SLURM_NTASKS', { SLURM_PROCID: '0', SLURM_JOB_NODELIST: 'n1' }, /^slurm: no world size: set SLURM_NTASKS \(start psnode with srun\) or PSRPC_WORLD_SIZE$/, 'SLURM_NTASKS'],
  ['Slurm without a node list', { SLURM_PROCID: '0', SLURM_NTASKS: '2' }, /^slurm: no rendezvous address: set SLURM_JOB_NODELIST or MASTER_ADDR or PSRPC_MASTER$/, 'SLURM_JOB_NODELIST'],
  ['psrpc variables without a rank', { PSRPC_WORLD_SIZE: '2', PSRPC_MASTER: 'h:1' }, /^psrpc: no rank: set PSRPC_RANK$/, 'PSRPC_RANK'],
];

for (const [what, env, message, variable] of bad) {
  test(`one clear line naming the variable: ${what}`, (t) => {
    const e = t.throws(() => clusterPlace(env, { servers: 1 }), { instanceOf: ClusterEnvError });
    t.regex(e!.message, message);
    t.is(e!.variable, variable);
    t.false(e!.message.includes('\n'));
  });
}

// ---- Slurm host lists --------------------------------------------------------------------------

const lists: Array<[string, string[]]> = [
  ['node01', ['node01']],
  ['node[01-04,07]', ['node01', 'node02', 'node03', 'node04', 'node07']],
  ['gpu-a[1-2],gpu-b3', ['gpu-a1', 'gpu-a2', 'gpu-b3']],
  ['n[001-003]-ib', ['n001-ib', 'n002-ib', 'n003-ib']],
  ['n[8-10]', ['n8', 'n9', 'n10']],
  ['n[08-10]', ['n08', 'n09', 'n10']],
  ['rack[1-2]-n[1-2]', ['rack1-n1', 'rack1-n2', 'rack2-n1', 'rack2-n2']],
  ['a,b[3],c.example.org', ['a', 'b3', 'c.example.org']],
  ['10.0.0.[5-6]', ['10.0.0.5', '10.0.0.6']],
  ['localhost', ['localhost']],
];

for (const [list, hosts] of lists) {
  test(`host list ${list}`, (t) => {
    t.deepEqual(parseHostlist(list), hosts);
    t.is(firstHost(list), hosts[0]);
  });
}

const malformed: Array<[string, RegExp]> = [
  ['', /it is empty/],
  ['node[01-04', /the '\[' at character 5 is never closed/],
  ['node01-04]', /the '\]' at character 10 closes nothing/],
  ['node[[1-2]]', /a '\[' inside brackets/],
  ['node[]', /'\[\]' names no numbers/],
  ['node[4-1]', /the range '4-1' runs backwards/],
  ['node[a-b]', /'a-b' in brackets is not a number or a range a-b/],
  ['node[1-2-3]', /'1-2-3' in brackets is not a number/],
  ['node[1,,2]', /'' in brackets is not a number/],
  ['a,,b', /an empty host name at character 3/],
  [',a', /an empty host name at character 1/],
  ['a,', /an empty host name/],
  ['a b', /it contains whitespace/],
  ['node$1', /'\$' at character 5 cannot be part of a host name/],
  ['n[0-99999999]', new RegExp(`expands to more than ${MAX_HOSTS} hosts`)],
];

for (const [list, reason] of malformed) {
  test(`malformed host list '${list}' is refused`, (t) => {
    const e = t.throws(() => parseHostlist(list), { instanceOf: HostlistError });
    t.regex(e!.message, reason);
    t.true(e!.message.startsWith(`malformed host list '${list}': `));
  });
}

test('the first host of a huge list is found without expanding it', (t) => {
  t.is(firstHost('n[0000001-9999999],x'), 'n0000001');
});
