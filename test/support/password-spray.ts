/**
 * A password sprayer in its own process, so its SSH handshakes do not share the server's event
 * loop: `node password-spray.ts <port> <connections> <seconds>` keeps that many connections
 * guessing passwords for user "pat" until the time is up or it is killed (SIGTERM), then prints
 * the number of guesses made.
 */
import ssh2 from 'ssh2';

const [port = '0', connections = '60', seconds = '120'] = process.argv.slice(2);
const deadline = Date.now() + Number(seconds) * 1000;
let running = true;
let guesses = 0;
process.on('SIGTERM', () => (running = false));

function guess(i: number): Promise<void> {
  return new Promise((resolve) => {
    const client = new ssh2.Client();
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      guesses++;
      client.end();
      resolve();
    };
    client.on('error', finish);
    client.once('close', finish);
    client.once('ready', finish);
    client.connect({ host: '127.0.0.1', port: Number(port), username: 'pat', password: `guess-${i}`, readyTimeout: 60_000 });
  });
}

async function sprayer(): Promise<void> {
  for (let i = 0; running && Date.now() < deadline && i < 100_000; i++) await guess(i);
}

await Promise.all(Array.from({ length: Number(connections) }, () => sprayer()));
console.log(String(guesses));
