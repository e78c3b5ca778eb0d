// A minimal LiveSession client (grpc-js). From examples/node: npm install, then
//   node live.js <gateway host:port> <face image or video> <speech.raw: 16-bit mono PCM at 16 kHz> <out.h264>
// Streams the PCM in 20 ms chunks at real-time pace after `ready`, writes the H.264 access units as they come
// and prints the session's stats. Token mode: set LIPSYNC_TOKEN.
const grpc = require("@grpc/grpc-js");
const loader = require("@grpc/proto-loader");
const fs = require("fs");
const path = require("path");

const [target, facePath, pcmPath, outPath] = process.argv.slice(2);
const protos = path.join(__dirname, "..", "..", "protos");
const def = loader.loadSync("lipsync/v1/gateway.proto", { includeDirs: [protos], keepCase: true, defaults: true, longs: Number, enums: String });
const { LipsyncGateway } = grpc.loadPackageDefinition(def).lipsync.v1;
const client = new LipsyncGateway(target, grpc.credentials.createInsecure());

const meta = new grpc.Metadata();
if (process.env.LIPSYNC_TOKEN) meta.add("authorization", `Bearer ${process.env.LIPSYNC_TOKEN}`);
const face = fs.readFileSync(facePath);
const pcm = fs.readFileSync(pcmPath);
const out = fs.createWriteStream(outPath);
const call = client.LiveSession(meta);
let frames = 0;
let timer = null;

call.write({ start: { options: { engine: "loudness" }, face_size: face.length, sample_rate: 16000,
                      output: "LIVE_OUTPUT_H264_AU" } });
call.write({ face });
call.on("data", (msg) => {
  if (msg.ready) {
    console.log(`ready: ${msg.ready.engine}, ${msg.ready.width}x${msg.ready.height} at ${msg.ready.fps} fps`);
    let at = 0;
    timer = setInterval(() => {        // 20 ms of audio every 20 ms
      if (at >= pcm.length) {
        clearInterval(timer);
        call.write({ control: "LIVE_CONTROL_FLUSH" });
        call.end();                          // the session ends once the queued audio is shown
        return;
      }
      call.write({ audio: pcm.subarray(at, at + 640) });
      at += 640;
    }, 20);
  } else if (msg.frame) {
    out.write(msg.frame.data);
    frames += 1;
  } else if (msg.ending) {                   // an error status follows: stop sending
    clearInterval(timer);
    call.end();
  } else if (msg.stats) {
    const s = msg.stats;
    console.log(`stats: ${s.frames} frames, ${s.speech_frames} speech, ${s.frames_late} late, ` +
                `latency p95 ${Number(s.latency_p95_ms).toFixed(0)} ms`);
  }
});
call.on("error", (e) => { console.error(`error ${e.code}: ${e.details}`); process.exitCode = 1; });
call.on("end", () => { out.end(); console.log(`wrote ${outPath}: ${frames} frames`); });
