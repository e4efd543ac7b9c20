// Reads a Parquet file with hyparquet (an independent, pure JavaScript reader) and prints it
// as one JSON object for expect.py to compare with the documents:
//
//   {"schema": [{"name", "type", "logical", "converted", "repetition"}],   leaf columns in order
//    "kv": {key: value},                                                   key-value metadata
//    "num_rows": N,
//    "columns": {name: [value, ...]}}
//
// Values: numbers as JavaScript's shortest round-trip text (String(x): "0.1", "1e-7", "NaN",
// "Infinity", "-0"), 64-bit integers and timestamps (microseconds since the epoch, kept
// exact through the parsers option) as decimal text, booleans and strings as JSON, nulls as
// null.
//
// Usage: node parquet_read.mjs HYPARQUET_DIR FILE
import { pathToFileURL } from 'node:url'
import path from 'node:path'

const [dir, file] = process.argv.slice(2)
const hp = await import(pathToFileURL(path.join(dir, 'node_modules/hyparquet/src/node.js')).href)
const buf = await hp.asyncBufferFromFile(file)
const meta = await hp.parquetMetadataAsync(buf)
const schema = meta.schema.slice(1).map(e => ({
  name: e.name,
  type: e.type ?? null,
  logical: e.logical_type ? JSON.parse(JSON.stringify(e.logical_type, (k, v) => typeof v === 'bigint' ? String(v) : v)) : null,
  converted: e.converted_type ?? null,
  repetition: e.repetition_type ?? null,
}))
const kv = {}
for (const { key, value } of meta.key_value_metadata ?? []) kv[key] = value
const columns = {}
for (const s of schema) columns[s.name] = []
await hp.parquetRead({
  file: buf,
  metadata: meta,
  rowFormat: 'object',
  parsers: { timestampFromMicroseconds: micros => ({ micros: String(micros) }) },
  onComplete: rows => {
    for (const row of rows) {
      for (const s of schema) columns[s.name].push(row[s.name])
    }
  },
})
const text = v => {
  if (v === null || v === undefined) return null
  if (typeof v === 'bigint') return String(v)
  if (typeof v === 'number') return Object.is(v, -0) ? '-0' : String(v)
  if (typeof v === 'object' && 'micros' in v) return v.micros
  return v
}
for (const s of schema) columns[s.name] = columns[s.name].map(text)
process.stdout.write(JSON.stringify({ schema, kv, num_rows: String(meta.num_rows), columns }))
