// Reads a scrape in the Prometheus text format on stdin, parses it with
// parse-prometheus-text-format and prints the families as JSON; exits 1
// with the parser's complaint when the text is not valid.
import parse from 'parse-prometheus-text-format';

let text = '';
process.stdin.setEncoding('utf8');
for await (const chunk of process.stdin) text += chunk;

try {
    process.stdout.write(JSON.stringify(parse(text)));
} catch (e) {
    process.stderr.write(`not Prometheus text: ${e.message}\n`);
    process.exit(1);
}
