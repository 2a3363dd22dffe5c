'use strict';

// The event-loop probe: a static request to the server under test every
// 5 ms on one keep-alive connection, timed from write to the last byte.
//
//   node probe.js <url> <deadline seconds>
//
// Prints "ready" after the first answer; on SIGTERM (or at the deadline)
// prints {n, p50, p99, max, errors} in milliseconds and exits.

const http = require('http');

const url = new URL(process.argv[2]);
const deadline = Date.now() + Number(process.argv[3] || 60) * 1000;
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const lat = [];
let errors = 0, stop = false, ready = false;

const now = () => Number(process.hrtime.bigint()) / 1e6;

function pct(a, p) {
    const v = a.slice().sort((x, y) => x - y);
    return v.length ? v[Math.min(v.length - 1, Math.ceil(p / 100 * v.length) - 1)]
                    : null;
}

function finish() {
    const r = { n: lat.length, p50: pct(lat, 50), p99: pct(lat, 99),
                max: lat.length ? Math.max(...lat) : null, errors };
    process.stdout.write(JSON.stringify(r) + '\n');
    process.exit(0);
}

function once() {
    if (stop || Date.now() > deadline) {
        return finish();
    }
    const t0 = now();
    const req = http.get({ host: url.hostname, port: url.port, path: url.pathname,
                           agent, timeout: 10000 }, (res) => {
        res.on('data', () => {});
        res.on('end', () => {
            lat.push(now() - t0);
            if (res.statusCode !== 200) {
                errors++;
            }
            if (!ready) {
                ready = true;
                lat.length = 0;
                process.stdout.write('ready\n');
            }
            setTimeout(once, 5);
        });
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => { errors++; setTimeout(once, 5); });
}

process.on('SIGTERM', () => { stop = true; });
once();
