// provider.mjs PORT EVENT_DELAY_MS - the fake provider of the soak: the test
// suite's fake OpenAI (tests/upstream/fake-openai.mjs, unchanged), which
// replays the recorded streams in ../shared/fixtures byte for byte, with
// EVENT_DELAY_MS between events so an answer takes as long as a real one
// (text-stop: 34 events; fixture:openai-python_json-object-long: 181), and
// "slow:<ms>:<count>" generated drips.
//
// The fake keeps every request it saw (tests read them); a soak would grow
// that list for ten minutes, so it is emptied every few seconds. Prints
// "ready" once it listens.
import { startFakeOpenAI } from '../../tests/upstream/fake-openai.mjs';

const port = Number(process.argv[2] ?? 0);
const eventDelayMs = Number(process.argv[3] ?? 15);
const fake = await startFakeOpenAI({ port, eventDelayMs });
setInterval(() => fake.reset(), 5000).unref();
process.stdout.write(`ready ${fake.baseURL}\n`);
const stop = () => fake.close().then(() => process.exit(0));
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
