// Reference face descriptors computed by face-api itself (dlib's ResNet, 128-d) for dlfd_core's tests.
//
// Usage: node reference.mjs CROPS.u8 COUNT OUT.json
//   CROPS.u8  raw uint8 RGB crops, shape [COUNT, 150, 150, 3], row-major (what scripts/make_faceapi_fixture.py writes)
//   OUT.json  {"versions": {...}, "backend": "cpu", "descriptors": [[128 numbers], ...]}
//
// It loads face-api's Node build that needs no native binaries (dist/face-api.node-wasm.js, which requires plain
// @tensorflow/tfjs) and runs it on tfjs's pure-JS "cpu" backend. The weights are the ones shipped in the package
// (model/face_recognition_model*). Install next to this file, or in a scratch copy of it:
//   npm install --ignore-scripts --no-audit --no-fund
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(import.meta.url);
const faceapi = require('@vladmandic/face-api/dist/face-api.node-wasm.js');

const SIZE = 150;

async function main() {
  const [cropsPath, countText, outPath] = process.argv.slice(2);
  if (!cropsPath || !countText || !outPath) {
    throw new Error('usage: node reference.mjs CROPS.u8 COUNT OUT.json');
  }
  const count = Number.parseInt(countText, 10);
  const bytes = readFileSync(cropsPath);
  if (bytes.length !== count * SIZE * SIZE * 3) {
    throw new Error(`${cropsPath}: expected ${count * SIZE * SIZE * 3} bytes, found ${bytes.length}`);
  }

  const { tf } = faceapi;
  await tf.setBackend('cpu');
  await tf.ready();

  const packageDir = path.dirname(require.resolve('@vladmandic/face-api/package.json'));
  const modelDir = path.join(packageDir, 'model');
  await faceapi.nets.faceRecognitionNet.loadFromDisk(modelDir);

  const descriptors = [];
  for (let i = 0; i < count; i += 1) {
    const view = new Uint8Array(bytes.buffer, bytes.byteOffset + i * SIZE * SIZE * 3, SIZE * SIZE * 3);
    const image = tf.tensor3d(Int32Array.from(view), [SIZE, SIZE, 3], 'int32');
    // A 150x150 input is neither padded nor resized by face-api; the net casts it to float32 itself.
    const descriptor = await faceapi.nets.faceRecognitionNet.computeFaceDescriptor(image);
    image.dispose();
    descriptors.push(Array.from(descriptor));
  }

  const facePackage = JSON.parse(readFileSync(path.join(packageDir, 'package.json'), 'utf8'));
  const result = {
    versions: { 'face-api': facePackage.version, tfjs: tf.version.tfjs, 'tfjs-core': tf.version['tfjs-core'], node: process.version },
    backend: tf.getBackend(),
    descriptors,
  };
  writeFileSync(outPath, JSON.stringify(result));
}

main().catch((error) => {
  process.stderr.write(`${error.stack || error}\n`);
  process.exit(1);
});
