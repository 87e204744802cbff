/**
 * A small builder of ONNX graphs over the protobuf schema of the `onnx-proto` package: named
 * inputs, fp32/int64 initializers, nodes with typed attributes, nested graphs (Scan bodies) and
 * the serialized ModelProto that onnxruntime loads. Value names are generated, so graph code reads
 * as expressions; a nested graph shares its parent's counter, so names never collide with the
 * outer-scope values it captures.
 */
import { onnx } from 'onnx-proto';

export type ElemType = 'float' | 'int64' | 'bool' | 'uint8';
export type Dim = number | string;

/** Attribute values: a plain number is an INT, {f} a FLOAT, arrays of numbers INTS, a Graph a GRAPH. */
export type Attr = number | { f: number } | number[] | string | Graph;

/** The opset the graphs are written against (Scan 16, CumSum 14, Trilu 14, ReduceSum with axes input). */
export const OPSET = 17;

const ELEM: Record<ElemType, onnx.TensorProto.DataType> = {
  float: onnx.TensorProto.DataType.FLOAT,
  int64: onnx.TensorProto.DataType.INT64,
  bool: onnx.TensorProto.DataType.BOOL,
  uint8: onnx.TensorProto.DataType.UINT8,
};

/** ONNX Runtime's contrib operator domain (MatMulNBits). */
export const CONTRIB_DOMAIN = 'com.microsoft';

function valueInfo(name: string, type: ElemType, dims?: Dim[]): onnx.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType: ELEM[type],
        shape: dims ? { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } : undefined,
      },
    },
  };
}

function attribute(name: string, v: Attr): onnx.IAttributeProto {
  const T = onnx.AttributeProto.AttributeType;
  if (typeof v === 'number') {
    if (!Number.isInteger(v)) throw new Error(`attribute ${name}: ${v} is not an integer; write {f: ${v}} for a float`);
    return { name, type: T.INT, i: v };
  }
  if (typeof v === 'string') return { name, type: T.STRING, s: new TextEncoder().encode(v) };
  if (Array.isArray(v)) return { name, type: T.INTS, ints: v };
  if (v instanceof Graph) return { name, type: T.GRAPH, g: v.toGraphProto(name) };
  return { name, type: T.FLOAT, f: v.f };
}

class Counter {
  n = 0;
  /** Whether any graph sharing this counter uses a com.microsoft operator. */
  contrib = false;
}

export class Graph {
  private readonly nodes: onnx.INodeProto[] = [];
  private readonly initializers: onnx.ITensorProto[] = [];
  private readonly inputs: onnx.IValueInfoProto[] = [];
  private readonly outputs: onnx.IValueInfoProto[] = [];
  private readonly counter: Counter;

  constructor(parent?: Graph) {
    this.counter = parent ? parent.counter : new Counter();
  }

  /** A graph nested in this one (e.g. a Scan body); it may use this graph's values by name. */
  subgraph(): Graph {
    return new Graph(this);
  }

  private fresh(hint: string): string {
    return `${hint}_${this.counter.n++}`;
  }

  /** A graph input. Names are used as given; they are the feed names at run time. */
  input(name: string, type: ElemType, dims?: Dim[]): string {
    this.inputs.push(valueInfo(name, type, dims));
    return name;
  }

  /** Declares `value` as the graph output `name`. */
  output(name: string, value: string, type: ElemType = 'float', dims?: Dim[]): void {
    this.nodes.push({ opType: 'Identity', input: [value], output: [name], name: this.fresh('out') });
    this.outputs.push(valueInfo(name, type, dims));
  }

  /** An fp32 initializer, stored as raw little-endian bytes without copying `data` until serialization. */
  weight(data: Float32Array, dims: number[], hint = 'w'): string {
    const n = dims.reduce((a, b) => a * b, 1);
    if (data.length !== n) throw new Error(`initializer ${hint}: ${data.length} values for shape ${JSON.stringify(dims)}`);
    const name = this.fresh(hint);
    this.initializers.push({ name, dims, dataType: ELEM.float, rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) });
    return name;
  }

  /** A uint8 initializer (packed quantized weights). */
  bytes(data: Uint8Array, dims: number[], hint = 'u8'): string {
    const n = dims.reduce((a, b) => a * b, 1);
    if (data.length !== n) throw new Error(`initializer ${hint}: ${data.length} bytes for shape ${JSON.stringify(dims)}`);
    const name = this.fresh(hint);
    this.initializers.push({ name, dims, dataType: ELEM.uint8, rawData: data });
    return name;
  }

  /** A small fp32 constant. */
  f32(values: number[] | Float32Array, dims: number[] = [values.length]): string {
    return this.weight(Float32Array.from(values), dims, 'c');
  }

  /** A small int64 constant. */
  i64(values: number[], dims: number[] = [values.length]): string {
    const name = this.fresh('i');
    const data = BigInt64Array.from(values.map((v) => BigInt(v)));
    this.initializers.push({ name, dims, dataType: ELEM.int64, rawData: new Uint8Array(data.buffer) });
    return name;
  }

  /** A scalar int64 constant (rank 0). */
  scalar(v: number): string {
    return this.i64([v], []);
  }

  /** One node with one output. */
  op(type: string, inputs: string[], attrs: Record<string, Attr> = {}): string {
    return this.opN(type, inputs, 1, attrs)[0];
  }

  /** One node of ONNX Runtime's com.microsoft domain with one output. */
  contribOp(type: string, inputs: string[], attrs: Record<string, Attr> = {}): string {
    this.counter.contrib = true;
    return this.opN(type, inputs, 1, attrs, CONTRIB_DOMAIN)[0];
  }

  /** One node with `n` outputs. An empty input name marks an omitted optional input. */
  opN(type: string, inputs: string[], n: number, attrs: Record<string, Attr> = {}, domain?: string): string[] {
    const outputs = Array.from({ length: n }, () => this.fresh(type.toLowerCase()));
    this.nodes.push({
      ...(domain ? { domain } : {}),
      opType: type,
      input: inputs,
      output: outputs,
      name: this.fresh(`n_${type}`),
      attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
    });
    return outputs;
  }

  toGraphProto(name: string): onnx.IGraphProto {
    return { name, node: this.nodes, initializer: this.initializers, input: this.inputs, output: this.outputs };
  }

  /** The serialized model: this graph as the main graph at the default-domain opset OPSET. */
  encodeModel(name: string): Uint8Array {
    const model: onnx.IModelProto = {
      irVersion: onnx.Version.IR_VERSION,
      producerName: 'kimi-linear-code',
      opsetImport: [{ domain: '', version: OPSET }, ...(this.counter.contrib ? [{ domain: CONTRIB_DOMAIN, version: 1 }] : [])],
      graph: this.toGraphProto(name),
    };
    return onnx.ModelProto.encode(model).finish();
  }
}
