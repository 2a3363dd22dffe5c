'use strict';

// The login flood of `make bench` (mode loginflood of client.js), in a
// process of its own so that its work does not delay the client's
// measurement: <c> loops of POST /api/login with random names until it is
// told to stop (SIGTERM); then prints {"logins":n,"codes":{...}}.
//
//   node flood.js <port> <c>

const http = require('http');
const port = Number(process.argv[2]), c = Number(process.argv[3] || 32);
const agent = new http.Agent({ keepAlive: true, maxSockets: c });
const codes = {};
let stop = false, sent = 0;

function one() {
    return new Promise((resolve) => {
        const body = JSON.stringify({
            username: 'flood-' + Math.random().toString(36).slice(2),
            password: 'not-the-password' });
        const req = http.request({
            host: '127.0.0.1', port, path: '/api/login', method: 'POST', agent,
            headers: { 'Content-Type': 'application/json',
                       'Content-Length': Buffer.byteLength(body) },
        }, (res) => {
            res.resume();
            res.on('end', () => {
                codes[res.statusCode] = (codes[res.statusCode] || 0) + 1;
                resolve();
            });
        });
        req.on('error', () => resolve());
        req.end(body);
    });
}

process.on('SIGTERM', () => { stop = true; });

(async () => {
    const loops = [];
    for (let i = 0; i < c; i++) {
        loops.push((async () => {
            while (!stop) {
                await one();
                sent++;
            }
        })());
    }
    await Promise.all(loops);
    process.stdout.write(JSON.stringify({ logins: sent, codes }) + '\n');
    process.exit(0);
})();
