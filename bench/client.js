'use strict';

// The load client of `make bench`: one program drives the three targets
// the same way, so that they differ only in the transport.
//
//   node client.js <config.json>
//
// config: { target: "ssh" | "sshpipe" | "segura" | "wetty", mode: ...,
//           deadline: <s>,
//           watch: { pids: [..], tree: bool, children: bool }, ... }
//
// Targets and what "the terminal" is for each:
//   ssh     `ssh -tt` under a pty (node-pty); this process is the
//           terminal and reads the pty master itself
//   sshpipe `ssh -tt` with its stdin and stdout on pipes: the stricter
//           baseline, without a local pty in the way
//   segura  a WebSocket (npm ws) to nginx's /session: binary frames are
//           terminal output, the first one is the prompt
//   seguraack  the same, acknowledging what it received (flow control on)
//   seguranorec  the same to a location with segura_recording off
//   wetty   socket.io (websocket transport) to wetty, its "data" events,
//           with the "commit" acknowledgements its browser client sends
//
// Modes (every loop has a count and the whole run a deadline):
//   throughput  50 MiB of base64 printed by the device, MiB/s and the CPU
//               time of the watched processes over the transfer
//   setup       n sessions one after the other, request to first byte
//   echo        one byte to an interactive `cat` (raw tty) and back, n times
//   idle        n sessions held open at once, PSS of the watched processes
//               before and after
//   storm       n sessions requested at once while probe.js measures a
//               static request on the server's event loop
//   loginflood  (segura) n set-ups one after the other while flood loops
//               post logins with random names
//   hold        one session at its prompt for hold_s seconds (the idle
//               cost of a recording)
//   blackhole   (segura) blackhole.n sessions to a device that accepts TCP
//               and never speaks (a listener here), then, while they hang,
//               the set-up of n sessions one after the other, as in setup
//
// Prints one JSON object on stdout.

const fs = require('fs');
const path = require('path');
const { spawn: spawnChild } = require('child_process');

const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const DEADLINE = Date.now() + (cfg.deadline || 120) * 1000;
const CLK_TCK = 100;
const MiB = 1048576;

const now = () => Number(process.hrtime.bigint()) / 1e6;   /* ms */

setTimeout(() => fail('deadline of ' + cfg.deadline + ' s reached'),
           DEADLINE - Date.now()).unref();

function fail(msg) {
    process.stdout.write(JSON.stringify({ error: String(msg) }) + '\n');
    process.exit(1);
}

function remaining() {
    const r = DEADLINE - Date.now();
    if (r <= 0) {
        fail('deadline reached');
    }
    return r;
}


/* the watched processes: /proc accounting */

function children(pid) {
    try {
        const all = fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8');
        return all.split(' ').filter(Boolean).map(Number);
    } catch (e) {
        return [];
    }
}

function watched() {
    const w = cfg.watch || {};
    let roots = (w.pids || []).slice();
    if (w.self_children) {
        roots = roots.concat(children(process.pid));
    }
    const out = new Set();
    const walk = (p) => {
        if (out.has(p)) {
            return;
        }
        out.add(p);
        if (w.tree || w.self_children) {
            children(p).forEach(walk);
        }
    };
    roots.forEach(walk);
    return [...out];
}

function cpuTicks(pids) {
    let t = 0;
    for (const p of pids) {
        try {
            const s = fs.readFileSync(`/proc/${p}/stat`, 'utf8');
            const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
            t += Number(f[11]) + Number(f[12]);   /* utime, stime */
        } catch (e) { /* gone */ }
    }
    return t;
}

function pssKiB(pids) {
    let kib = 0;
    for (const p of pids) {
        try {
            const s = fs.readFileSync(`/proc/${p}/smaps_rollup`, 'utf8');
            const m = /^Pss:\s+(\d+) kB/m.exec(s);
            kib += m ? Number(m[1]) : 0;
        } catch (e) { /* gone */ }
    }
    return kib;
}

function rssKiB(pids) {
    let kib = 0;
    for (const p of pids) {
        try {
            const s = fs.readFileSync(`/proc/${p}/status`, 'utf8');
            const m = /^VmRSS:\s+(\d+) kB/m.exec(s);
            kib += m ? Number(m[1]) : 0;
        } catch (e) { /* gone */ }
    }
    return kib;
}


/*
 * A terminal session over one of the transports: open(), write(bytes),
 * close(); ondata(string) is called with terminal output as it comes.
 * open() resolves with the time of the first output byte (the prompt).
 */

function Session() {
    this.head = '';
    this.ondata = null;
    this.first = null;
    this.closed = false;
}

/*
 * The prompt, not the first byte: ssh prints its host key warning to the
 * pty before it authenticates, so "first byte" would flatter whoever runs
 * an ssh client. Every device here prints a prompt ending in "# " or "$ ".
 */
Session.prototype.data = function (s) {
    if (this.first === null) {
        this.head = (this.head + s.toString('latin1')).slice(-64);
        if (/[#$] $/.test(this.head)) {
            this.first = now();
            if (this._firstResolve) {
                this._firstResolve(this.first);
            }
        }
    }
    if (this.ondata) {
        this.ondata(s);
    }
};

Session.prototype.open = function () {
    return new Promise((resolve, reject) => {
        this._firstResolve = resolve;
        this._reject = reject;
        this.t0 = now();
        try {
            this.start();
        } catch (e) {
            reject(e);
        }
    });
};

Session.prototype.failed = function (why) {
    if (this.first === null && this._reject) {
        this._reject(new Error(why));
    }
};


function SshSession() {
    Session.call(this);
}
Object.setPrototypeOf(SshSession.prototype, Session.prototype);

SshSession.prototype.start = function () {
    const pty = require('node-pty');
    const s = cfg.ssh;
    const port = cfg.port || s.port;
    this.term = pty.spawn('ssh', [
        '-tt', '-F', s.config || '/dev/null', '-i', s.key, '-p', String(port),
        '-o', 'UserKnownHostsFile=/dev/null', '-o', 'StrictHostKeyChecking=no',
        '-o', 'LogLevel=ERROR', '-o', 'EscapeChar=none',
        '-o', 'BatchMode=yes', `${s.user}@127.0.0.1`,
    ], { name: 'xterm-256color', cols: 80, rows: 24, encoding: null });
    this.term.onData((d) => this.data(d));
    this.term.onExit(() => {
        this.closed = true;
        this.failed('ssh exited');
        if (this.onclose) {
            this.onclose();
        }
    });
};

SshSession.prototype.write = function (s) { this.term.write(s); };


function SshPipeSession() {
    SshSession.call(this);
}
Object.setPrototypeOf(SshPipeSession.prototype, SshSession.prototype);

SshPipeSession.prototype.start = function () {
    const s = cfg.ssh;
    const port = cfg.port || s.port;
    this.child = require('child_process').spawn('ssh', [
        '-tt', '-F', s.config || '/dev/null', '-i', s.key, '-p', String(port),
        '-o', 'UserKnownHostsFile=/dev/null', '-o', 'StrictHostKeyChecking=no',
        '-o', 'LogLevel=ERROR', '-o', 'EscapeChar=none',
        '-o', 'BatchMode=yes', `${s.user}@127.0.0.1`,
    ], { stdio: ['pipe', 'pipe', 'ignore'] });
    this.child.stdout.on('data', (d) => this.data(d));
    this.child.on('exit', () => {
        this.closed = true;
        this.failed('ssh exited');
        if (this.onclose) {
            this.onclose();
        }
    });
    /* a peer that went away must not kill the client with EPIPE */
    this.child.stdin.on('error', () => {});
};

SshPipeSession.prototype.write = function (s) { this.child.stdin.write(s); };

SshPipeSession.prototype.close = function () {
    return new Promise((resolve) => {
        if (this.closed) {
            return resolve();
        }
        this.onclose = resolve;
        this.child.kill('SIGTERM');
    });
};

SshSession.prototype.close = function () {
    return new Promise((resolve) => {
        if (this.closed) {
            return resolve();
        }
        this.onclose = resolve;
        this.term.kill('SIGTERM');
    });
};


function SeguraSession() {
    Session.call(this);
}
Object.setPrototypeOf(SeguraSession.prototype, Session.prototype);

SeguraSession.prototype.start = function () {
    const WebSocket = require('ws');
    const s = cfg.segura;
    const dev = cfg.device || s.device;
    const url = `ws://127.0.0.1:${s.port}${s.path || '/session'}`
                + `?key=${s.key}&device=${dev}`
                + '&cols=80&rows=24';
    this.ws = new WebSocket(url, { headers: { Cookie: s.cookie },
                                   perMessageDeflate: false });
    /*
     * seguraack: acknowledges what it received, as the web UI acknowledges
     * what xterm.js rendered (every 32 KiB), so the server's end-to-end
     * flow control is on
     */
    const ack = cfg.target === 'seguraack';
    let got = 0, acked = 0;
    this.ws.on('message', (d, isBinary) => {
        if (isBinary) {
            this.data(d);
            got += d.length;
            if (ack && got - acked >= 32768) {
                acked = got;
                this.ws.send(JSON.stringify({ type: 'ack', bytes: got }));
            }
        } else {
            const ev = JSON.parse(d.toString());
            if (ack && ev.type === 'connected') {
                this.ws.send(JSON.stringify({ type: 'ack', bytes: 0 }));
            }
            if (cfg.target === 'segurawatched' && ev.type === 'connected') {
                this.watchPaused(ev.session);
            }
            if (ev.type === 'error') {
                this.failed('segura error ' + ev.code + ': ' + ev.message);
            }
        }
    });
    this.ws.on('error', (e) => this.failed('ws: ' + e.message));
    this.ws.on('close', () => {
        this.closed = true;
        this.failed('ws closed');
        if (this.onclose) {
            this.onclose();
        }
    });
};

/*
 * segurawatched: an administrator watches the session from the same
 * worker and never reads (its socket paused): the session must not slow
 * down for it (the watcher skips ahead)
 */
SeguraSession.prototype.watchPaused = function (id) {
    const WebSocket = require('ws');
    const s = cfg.segura;
    this.watcher = new WebSocket(`ws://127.0.0.1:${s.port}/session?watch=${id}`,
                                 { headers: { Cookie: s.watch_cookie },
                                   perMessageDeflate: false });
    this.watcher.on('open', () => this.watcher._socket.pause());
    this.watcher.on('error', (e) => this.failed('watcher: ' + e.message));
};

SeguraSession.prototype.write = function (s) {
    this.ws.send(Buffer.from(s), { binary: true });
};

SeguraSession.prototype.close = function () {
    return new Promise((resolve) => {
        if (this.closed) {
            return resolve();
        }
        this.onclose = resolve;
        if (this.watcher) {
            this.watcher.terminate();
        }
        this.ws.close(1000);
    });
};


function WettySession() {
    Session.call(this);
    this.unacked = 0;
}
Object.setPrototypeOf(WettySession.prototype, Session.prototype);

WettySession.prototype.start = function () {
    const { io } = require('socket.io-client');
    const port = cfg.port || cfg.wetty.port;
    this.sock = io(`http://127.0.0.1:${port}`, {
        path: '/wetty/socket.io', transports: ['websocket'],
        forceNew: true, reconnection: false,
    });
    this.sock.on('connect', () => {
        this.sock.emit('resize', { cols: 80, rows: 24 });
    });
    this.sock.on('data', (d) => {
        /*
         * wetty's flow control: the server pauses the pty when more than
         * 2 MiB are unacknowledged. Its browser client acknowledges 256 KiB
         * at most once per "data" event, after xterm.js has drawn it, and
         * wetty sends up to 512 KiB per event, so a fast stream stalls.
         * Here every byte received is acknowledged at once, in 256 KiB
         * units: the most favourable reading of the protocol for wetty.
         */
        this.unacked += d.length;
        while (this.unacked >= 262144) {
            this.unacked -= 262144;
            this.sock.emit('commit', 262144);
        }
        this.data(d);
    });
    this.sock.on('connect_error', (e) => this.failed('socket.io: ' + e.message));
    this.sock.on('logout', () => this.failed('wetty logout'));
    this.sock.on('disconnect', () => {
        this.closed = true;
        this.failed('socket.io disconnected');
        if (this.onclose) {
            this.onclose();
        }
    });
};

WettySession.prototype.write = function (s) { this.sock.emit('input', s); };

WettySession.prototype.close = function () {
    return new Promise((resolve) => {
        if (this.closed) {
            return resolve();
        }
        this.onclose = resolve;
        this.sock.disconnect();
    });
};


function newSession() {
    switch (cfg.target) {
    case 'ssh': return new SshSession();
    case 'sshpipe': return new SshPipeSession();
    case 'segura': return new SeguraSession();
    case 'seguraack': return new SeguraSession();
    case 'seguranorec': return new SeguraSession();
    case 'segurawatched': return new SeguraSession();
    case 'wetty': return new WettySession();
    }
    fail('unknown target ' + cfg.target);
}

function withTimeout(p, ms, what) {
    return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('timeout: ' + what)), ms);
        p.then((v) => { clearTimeout(t); resolve(v); },
               (e) => { clearTimeout(t); reject(e); });
    });
}

/* resolves when the output seen since the call matches re */
function waitOutput(s, re, ms) {
    return withTimeout(new Promise((resolve) => {
        let acc = '';
        s.ondata = (d) => {
            acc += d.toString('latin1');
            if (acc.length > 8192) {
                acc = acc.slice(-4096);
            }
            if (re.test(acc)) {
                s.ondata = null;
                resolve();
            }
        };
    }), Math.min(ms, remaining()), 'output ' + re);
}

/* runs pre in the shell and waits until the shell has answered */
async function shellReady(s, pre) {
    const ready = waitOutput(s, /READY/, 10000);
    s.write(pre + "printf 'RE''ADY\\n'\n");
    await ready;
}

async function openOne() {
    const s = newSession();
    await withTimeout(s.open(), Math.min(cfg.open_timeout_ms || 30000,
                                         remaining()), 'first prompt byte');
    return s;
}

function pct(a, p) {
    const v = a.slice().sort((x, y) => x - y);
    if (!v.length) {
        return null;
    }
    return v[Math.min(v.length - 1, Math.ceil(p / 100 * v.length) - 1)];
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));


async function throughput() {
    const bytes = cfg.bytes || 39321600;   /* 50 MiB once in base64 */
    const s = await openOne();
    await shellReady(s, '');   /* only the transfer counts */

    let got = 0, tail = '', done;
    const finished = new Promise((r) => { done = r; });
    s.ondata = (d) => {
        got += d.length;
        const t = tail + d.slice(-256).toString('latin1');
        tail = t.slice(-256);
        if (t.includes('ENDMARK')) {
            done();
        }
    };

    const pids = watched();
    const c0 = cpuTicks(pids);
    const t0 = now();
    s.write((cfg.command || `head -c ${bytes} /dev/zero | base64 -w0`)
            + `; printf '\\n%s%s\\n' END MARK\n`);
    await withTimeout(finished, remaining() - 1000, 'ENDMARK').catch((e) => fail(e.message + ' after ' + got + ' bytes, tail ' + JSON.stringify(tail)));
    const t1 = now();
    const c1 = cpuTicks(pids);
    const watching = !!(s.watcher && s.watcher.readyState === 1);
    await s.close();

    const mib = cfg.command ? got / MiB : bytes * 4 / 3 / MiB;
    const cpu = (c1 - c0) / CLK_TCK;
    return { mib, seconds: (t1 - t0) / 1000, mibps: mib / ((t1 - t0) / 1000),
             received: got, cpu_seconds: cpu, cpu_per_100mib: cpu / mib * 100,
             pids: pids.length, watching };
}


async function setup() {
    const n = cfg.n || 20, ms = [];
    for (let i = 0; i < n; i++) {
        const s = await openOne();
        ms.push(s.first - s.t0);
        await withTimeout(s.close(), remaining(), 'close');
    }
    return { n, ms, p50: pct(ms, 50), p95: pct(ms, 95) };
}


/*
 * Set-ups while logins flood the API: cfg.flood concurrent loops of POST
 * /api/login with random names (each an argon2 verification unless the
 * throttles refuse it first), and n set-ups one after the other meanwhile.
 */
async function loginflood() {
    const n = cfg.n || 20, ms = [];
    const kid = require('child_process').spawn(process.execPath,
        [__dirname + '/flood.js', String(cfg.segura.port),
         String(cfg.flood || 32)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    kid.stdout.on('data', (d) => { out += d; });
    const exited = new Promise((r) => kid.on('exit', r));
    await sleep(500);
    for (let i = 0; i < n; i++) {
        const s = await openOne();
        ms.push(s.first - s.t0);
        await withTimeout(s.close(), remaining(), 'close');
    }
    kid.kill('SIGTERM');
    await exited;
    const f = JSON.parse(out || '{"logins":0,"codes":{}}');
    return { n, ms, p50: pct(ms, 50), p95: pct(ms, 95), logins: f.logins,
             codes: f.codes };
}


async function echo() {
    const n = cfg.n || 500, ms = [];
    const s = await openOne();
    await shellReady(s, 'stty raw -echo; ');
    s.write('exec cat\n');
    await sleep(200);

    for (let i = 0; i < n; i++) {
        const ch = String.fromCharCode(97 + i % 26);
        let done;
        const back = new Promise((r) => { done = r; });
        s.ondata = (d) => {
            if (d.toString('latin1').includes(ch)) {
                done();
            }
        };
        const t0 = now();
        s.write(ch);
        await withTimeout(back, Math.min(5000, remaining()), 'echo');
        ms.push(now() - t0);
    }
    s.ondata = null;
    await s.close();
    return { n, p50: pct(ms, 50), p99: pct(ms, 99), max: Math.max(...ms) };
}


/* opens n sessions, at most conc at once; returns them and their times */
async function openMany(n, conc) {
    const sessions = [], ms = [];
    let next = 0, failed = 0, why = null;
    const worker = async () => {
        while (next < n) {
            next++;
            try {
                const s = await openOne();
                sessions.push(s);
                ms.push(s.first - s.t0);
            } catch (e) {
                failed++;
                why = e.message;
            }
        }
    };
    const ws = [];
    for (let i = 0; i < Math.min(conc, n); i++) {
        ws.push(worker());
    }
    await Promise.all(ws);
    return { sessions, ms, failed, why };
}

async function closeAll(sessions) {
    const conc = 50;
    for (let i = 0; i < sessions.length; i += conc) {
        await Promise.all(sessions.slice(i, i + conc).map(
            (s) => withTimeout(s.close(), 20000, 'close').catch(() => {})));
    }
}

async function idle() {
    const n = cfg.n || 50;

    /* a first session sets up what every later one shares */
    const w = await openOne();
    await w.close();
    await sleep(500);
    const before = watched();
    const pss0 = pssKiB(before), rss0 = rssKiB(before);

    const t0 = now();
    const { sessions, failed, why } = await openMany(n, cfg.concurrency || 25);
    const tOpen = (now() - t0) / 1000;
    /* idle: the recorder frees a session's buffer after a quiet second */
    await sleep(cfg.settle_ms || 1000);
    const after = watched();
    const pss1 = pssKiB(after), rss1 = rssKiB(after);
    const ok = sessions.length;

    /* still alive: every session still answers */
    await closeAll(sessions);

    return { n, ok, failed, why, open_seconds: tOpen,
             pss_before_kib: pss0, pss_after_kib: pss1,
             rss_before_kib: rss0, rss_after_kib: rss1,
             procs_before: before.length, procs_after: after.length,
             kib_per_session: ok ? (pss1 - pss0) / ok : null,
             rss_kib_per_session: ok ? (rss1 - rss0) / ok : null };
}


/* one session at its prompt for hold_s seconds, printing nothing */
async function hold() {
    const s = await openOne();
    await shellReady(s, '');
    const t0 = now();
    await sleep((cfg.hold_s || 60) * 1000);
    await withTimeout(s.close(), remaining(), 'close');
    return { held_seconds: (now() - t0) / 1000 };
}


function startProbe() {
    return new Promise((resolve, reject) => {
        const p = spawnChild(process.execPath,
            [path.join(__dirname, 'probe.js'), cfg.probe_url,
             String(Math.ceil(remaining() / 1000))],
            { stdio: ['ignore', 'pipe', 'inherit'] });
        let out = '';
        p.stdout.on('data', (d) => {
            out += d;
            if (out.includes('ready\n') && !p.ready) {
                p.ready = true;
                resolve(p);
            }
        });
        p.finished = new Promise((r) => p.on('exit', () => {
            r(JSON.parse(out.slice(out.indexOf('ready\n') + 6)));
        }));
        p.on('error', reject);
    });
}

async function storm() {
    const n = cfg.n || 100;
    const w = await openOne();     /* warm, as in idle */
    await w.close();

    const probe = await startProbe();
    await sleep(300);              /* the probe's own baseline */
    const t0 = now();
    const { sessions, ms, failed, why } = await openMany(n, n);
    const total = (now() - t0) / 1000;
    probe.kill('SIGTERM');
    const lat = await probe.finished;
    await closeAll(sessions);
    return { n, ok: sessions.length, failed, why, seconds: total,
             setup_p50: pct(ms, 50), setup_p95: pct(ms, 95),
             static_n: lat.n, static_p50: lat.p50, static_p99: lat.p99,
             static_max: lat.max, static_errors: lat.errors };
}


/*
 * The black hole: a loopback listener that accepts and never writes. The
 * hanging sessions go to cfg.blackhole.path, a location with a connect
 * timeout longer than the measurement; the run fails if any of them ended
 * before the measurement did (the load would not have been there).
 */
async function blackhole() {
    const net = require('net');
    const WebSocket = require('ws');
    const b = cfg.blackhole, s = cfg.segura, n = cfg.n || 20;
    const socks = new Set();
    let accepted = 0;

    const server = net.createServer((c) => {
        accepted++;
        socks.add(c);
        c.on('data', () => {});
        c.on('error', () => {});
        c.on('close', () => socks.delete(c));
    });
    await new Promise((r) => server.listen(b.port, '127.0.0.1', r));

    const w = await openOne();     /* warm, as in idle */
    await w.close();

    const hung = [];
    let ended = 0;
    for (let i = 0; i < b.n; i++) {
        const ws = new WebSocket(`ws://127.0.0.1:${s.port}${b.path}?key=${b.key}`
                                 + `&device=${b.device}&cols=80&rows=24`,
                                 { headers: { Cookie: b.cookie },
                                   perMessageDeflate: false });
        ws.on('error', () => {});
        ws.on('close', () => { ws.ended = true; ended++; });
        hung.push(ws);
    }

    /* every one of them at the black hole, or as many as get there */
    const t0 = now();
    while (socks.size < b.n && now() - t0 < (b.wait_ms || 10000)) {
        await sleep(20);
    }
    const held = socks.size;

    const ms = [];
    let failed = 0, why = null;
    for (let i = 0; i < n; i++) {
        try {
            const x = await openOne();
            ms.push(x.first - x.t0);
            await withTimeout(x.close(), remaining(), 'close');
        } catch (e) {
            failed++;
            why = e.message;
            break;
        }
    }
    const heldAfter = socks.size, endedEarly = ended;

    /* the hanging sessions go; nginx must let go of the device side too */
    hung.forEach((ws) => ws.terminate());
    const t1 = now();
    while (socks.size > 0 && now() - t1 < (b.drain_ms || 90000)) {
        await sleep(50);
    }
    const drained = (now() - t1) / 1000, left = socks.size;
    server.close();

    return { n, ms, failed, why, p50: pct(ms, 50), p95: pct(ms, 95),
             max: ms.length ? Math.max(...ms) : null,
             blackholed: b.n, accepted, held, held_after: heldAfter,
             ended_early: endedEarly, drain_seconds: drained,
             left_open: left };
}


(async () => {
    const modes = { throughput, setup, echo, idle, storm, blackhole,
                    loginflood, hold };
    if (!modes[cfg.mode]) {
        fail('unknown mode ' + cfg.mode);
    }
    const r = await modes[cfg.mode]();
    r.target = cfg.target;
    r.mode = cfg.mode;
    process.stdout.write(JSON.stringify(r) + '\n');
    process.exit(0);
})().catch((e) => fail(e.stack || e.message));
