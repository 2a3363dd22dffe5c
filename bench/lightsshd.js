'use strict';

// A light SSH server standing in as the device for the 1000-session row:
// an OpenSSH server costs about 14 MiB per session on the device side
// (DESIGN.md), so 1000 of them would not fit with everything else. This
// one (npm ssh2, one process) accepts any public key of the configured
// user, gives each session a pty-less echo "shell" that prints a prompt
// and echoes input, and costs the device a few KiB per session. Only the
// idle-session memory figure at 1000 sessions uses it; the table says so.
//
//   node lightsshd.js <port> <host key file> <user>

const fs = require('fs');
const { Server } = require('ssh2');

const [port, hostKey, user] = process.argv.slice(2);

const server = new Server({ hostKeys: [fs.readFileSync(hostKey)] }, (client) => {
    client.on('authentication', (ctx) => {
        if (ctx.method === 'publickey' && ctx.username === user) {
            return ctx.accept();
        }
        ctx.reject(['publickey']);
    });
    client.on('ready', () => {
        client.on('session', (accept) => {
            const session = accept();
            session.on('pty', (ok) => ok && ok());
            session.on('window-change', (ok) => ok && ok());
            session.on('env', (ok) => ok && ok());
            session.on('shell', (ok) => {
                const ch = ok();
                ch.write('$ ');
                ch.on('data', (d) => ch.write(d));
            });
        });
    });
    client.on('error', () => {});
});

server.listen(Number(port), '127.0.0.1', () => {
    process.stdout.write('listening\n');
});
