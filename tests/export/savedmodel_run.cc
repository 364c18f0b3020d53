// savedmodel_run: TF Serving's path through a SavedModel version, in C++.
//
// TF Serving loads a version with tensorflow::LoadSavedModel (tag "serve"),
// replays assets.extra/tf_serving_warmup_requests (a TFRecord file of
// tensorflow.serving.PredictionLog), then answers Predict by looking the
// signature up, feeding the request's tensors by their tensor names and
// fetching the outputs with Session::Run. This program does the same, so the
// tests can check an export against the C++ loader without a TF Serving
// binary:
//
//   savedmodel_run VERSION_DIR [REQUESTS RESPONSES]
//
// It loads VERSION_DIR, replays its warmup records (a failing record fails
// the run, as it fails TF Serving's load), prints one JSON object on stdout
// (every signature's inputs and outputs: alias, tensor name, dtype, shape;
// the warmup records replayed; load and warmup times), and with REQUESTS
// runs every record of that file -- the warmup file's format, PredictionLog
// with a predict_log.request -- writing the PredictResponse of each, in
// order, as one record of the TFRecord file RESPONSES.
//
// TF Serving's .proto files are not in the TensorFlow wheel, so the few
// messages involved (PredictionLog, PredictLog, PredictRequest, ModelSpec,
// PredictResponse) are read and written here in protobuf's wire format; the
// TensorProtos inside them are TensorFlow's own. Field numbers are those of
// tensorflow_serving/apis/{prediction_log,predict,model}.proto (the Python
// test checks them against the installed tensorflow-serving-api).
//
// Build (the test does it; see tests/export/test_cpp_loader.py):
//   g++ -O1 savedmodel_run.cc $(compile flags of tf.sysconfig) -o savedmodel_run \
//       $(link flags of tf.sysconfig) -Wl,--no-as-needed -l:libtensorflow_cc.so.2 -Wl,-rpath,TFDIR
// --no-as-needed: nothing here references libtensorflow_cc's session factory
// directly, and without it LoadSavedModel fails with "No session factory
// registered for the given session options".
//
// Exit status: 0 when everything ran; 1 with one line on stderr naming what
// failed (usage, load, warmup record N, request N) and TensorFlow's status.

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tensorflow/cc/saved_model/constants.h"
#include "tensorflow/cc/saved_model/loader.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor.pb.h"
#include "tensorflow/core/framework/tensor_shape.pb.h"
#include "tensorflow/core/framework/types.pb.h"
#include "tensorflow/core/lib/io/path.h"
#include "tensorflow/core/lib/io/record_reader.h"
#include "tensorflow/core/lib/io/record_writer.h"
#include "tensorflow/core/platform/env.h"
#include "tensorflow/core/protobuf/meta_graph.pb.h"

namespace {

using Status = absl::Status;  // tensorflow::Status is a deprecated alias of it

constexpr char kServeTag[] = "serve";  // tag_constants.h is not in the wheel
constexpr char kDefaultSignature[] = "serving_default";
constexpr char kWarmupFile[] = "tf_serving_warmup_requests";
constexpr int kMaxWarmupRecords = 1000;  // TF Serving's limit

// -- protobuf wire format: the little that the TF Serving messages need --------

enum WireType : uint32_t { kVarint = 0, kFixed64 = 1, kLength = 2, kFixed32 = 5 };

struct Field {
  uint32_t number = 0;
  uint32_t type = 0;
  uint64_t varint = 0;     // kVarint
  std::string_view bytes;  // kLength
};

// The fields of one serialized message, in order; unknown ones are the
// caller's to ignore, like protobuf's parser does.
class WireReader {
 public:
  explicit WireReader(std::string_view data) : data_(data) {}

  // false at the end of the message; *error set when it is malformed.
  bool Next(Field* field, std::string* error) {
    if (pos_ == data_.size()) return false;
    uint64_t tag;
    if (!Varint(&tag) || (tag >> 3) == 0 || (tag >> 3) > UINT32_MAX) return Fail(error, "bad tag");
    field->number = static_cast<uint32_t>(tag >> 3);
    field->type = static_cast<uint32_t>(tag & 7);
    switch (field->type) {
      case kVarint:
        if (!Varint(&field->varint)) return Fail(error, "truncated varint");
        return true;
      case kFixed64:
        return Skip(8) || Fail(error, "truncated fixed64");
      case kFixed32:
        return Skip(4) || Fail(error, "truncated fixed32");
      case kLength: {
        uint64_t size;
        if (!Varint(&size) || size > data_.size() - pos_) return Fail(error, "truncated field");
        field->bytes = data_.substr(pos_, size);
        pos_ += size;
        return true;
      }
      default:
        return Fail(error, "unsupported wire type " + std::to_string(field->type));
    }
  }

 private:
  bool Varint(uint64_t* value) {
    *value = 0;
    for (int shift = 0; shift < 64 && pos_ < data_.size(); shift += 7) {
      const uint8_t byte = static_cast<uint8_t>(data_[pos_++]);
      *value |= static_cast<uint64_t>(byte & 0x7f) << shift;
      if (!(byte & 0x80)) return true;
    }
    return false;
  }
  bool Skip(size_t n) {
    if (n > data_.size() - pos_) return false;
    pos_ += n;
    return true;
  }
  static bool Fail(std::string* error, const std::string& what) {
    *error = what;
    return false;
  }

  std::string_view data_;
  size_t pos_ = 0;
};

void PutVarint(uint64_t value, std::string* out) {
  while (value >= 0x80) {
    out->push_back(static_cast<char>((value & 0x7f) | 0x80));
    value >>= 7;
  }
  out->push_back(static_cast<char>(value));
}

void PutBytes(uint32_t number, std::string_view bytes, std::string* out) {
  PutVarint((static_cast<uint64_t>(number) << 3) | kLength, out);
  PutVarint(bytes.size(), out);
  out->append(bytes.data(), bytes.size());
}

void PutUint(uint32_t number, uint64_t value, std::string* out) {
  PutVarint((static_cast<uint64_t>(number) << 3) | kVarint, out);
  PutVarint(value, out);
}

// -- TF Serving's messages ----------------------------------------------------

struct PredictRequest {
  std::string model_name;
  std::string signature_name;
  std::vector<std::pair<std::string, tensorflow::TensorProto>> inputs;  // map<string, TensorProto> inputs = 2
  std::vector<std::string> output_filter;
};

// PredictionLog{predict_log = 6: PredictLog{request = 1: PredictRequest}}.
Status ParsePredictionLog(std::string_view data, PredictRequest* request) {
  std::string error;
  WireReader log(data);
  Field field;
  bool found = false;
  while (log.Next(&field, &error)) {
    if (field.type != kLength) continue;
    if (field.number >= 2 && field.number <= 7 && field.number != 6) {
      return absl::UnimplementedError("PredictionLog field " + std::to_string(field.number) +
                                      " (not a predict_log): only Predict warmup records are replayed here");
    }
    if (field.number != 6) continue;
    WireReader predict_log(field.bytes);
    Field inner;
    while (predict_log.Next(&inner, &error)) {
      if (inner.number != 1 || inner.type != kLength) continue;
      found = true;
      WireReader fields(inner.bytes);
      Field f;
      while (fields.Next(&f, &error)) {
        if (f.type != kLength) continue;
        if (f.number == 1) {  // ModelSpec: name = 1, signature_name = 3
          WireReader spec(f.bytes);
          Field s;
          while (spec.Next(&s, &error)) {
            if (s.type != kLength) continue;
            if (s.number == 1) request->model_name = std::string(s.bytes);
            if (s.number == 3) request->signature_name = std::string(s.bytes);
          }
        } else if (f.number == 2) {  // map entry: key = 1, value = 2
          WireReader entry(f.bytes);
          Field e;
          std::string key;
          tensorflow::TensorProto value;
          while (entry.Next(&e, &error)) {
            if (e.type != kLength) continue;
            if (e.number == 1) key = std::string(e.bytes);
            if (e.number == 2 && !value.ParseFromArray(e.bytes.data(), static_cast<int>(e.bytes.size()))) {
              return absl::DataLossError("input " + key + ": not a TensorProto");
            }
          }
          request->inputs.emplace_back(std::move(key), std::move(value));
        } else if (f.number == 3) {
          request->output_filter.emplace_back(f.bytes);
        }
      }
    }
  }
  if (!error.empty()) return absl::DataLossError("malformed PredictionLog: " + error);
  if (!found) return absl::InvalidArgumentError("PredictionLog without predict_log.request");
  return absl::OkStatus();
}

// PredictResponse{outputs = 1: map<string, TensorProto>, model_spec = 2}.
std::string SerializeResponse(const PredictRequest& request, const std::string& signature_name, int64_t version,
                              const std::vector<std::pair<std::string, tensorflow::TensorProto>>& outputs) {
  std::string out;
  for (const auto& [alias, proto] : outputs) {
    std::string entry;
    PutBytes(1, alias, &entry);
    PutBytes(2, proto.SerializeAsString(), &entry);
    PutBytes(1, entry, &out);
  }
  std::string spec, wrapped_version;
  PutBytes(1, request.model_name, &spec);
  PutUint(1, static_cast<uint64_t>(version), &wrapped_version);  // google.protobuf.Int64Value
  PutBytes(2, wrapped_version, &spec);
  PutBytes(3, signature_name, &spec);
  PutBytes(2, spec, &out);
  return out;
}

// -- Predict, as tensorflow_serving/servables/tensorflow/predict_util.cc does it --

std::string JoinKeys(const google::protobuf::Map<std::string, tensorflow::TensorInfo>& map) {
  std::set<std::string> keys;
  for (const auto& [key, info] : map) keys.insert(key);
  std::string joined;
  for (const auto& key : keys) joined += (joined.empty() ? "" : ",") + key;
  return joined;
}

Status RunPredict(const tensorflow::SavedModelBundle& bundle, const PredictRequest& request,
                  std::string* signature_name,
                  std::vector<std::pair<std::string, tensorflow::TensorProto>>* outputs) {
  *signature_name = request.signature_name.empty() ? kDefaultSignature : request.signature_name;
  const auto& signatures = bundle.meta_graph_def.signature_def();
  const auto found = signatures.find(*signature_name);
  if (found == signatures.end()) {
    return absl::FailedPreconditionError("Serving signature name: \"" + *signature_name +
                                         "\" not found in signature def");
  }
  const tensorflow::SignatureDef& signature = found->second;
  if (request.inputs.size() != static_cast<size_t>(signature.inputs().size())) {
    return absl::InvalidArgumentError("input size does not match signature: " +
                                      std::to_string(request.inputs.size()) +
                                      "!=" + std::to_string(signature.inputs().size()) + " (expected {" +
                                      JoinKeys(signature.inputs()) + "})");
  }
  std::vector<std::pair<std::string, tensorflow::Tensor>> feeds;
  for (const auto& [alias, proto] : request.inputs) {
    const auto input = signature.inputs().find(alias);
    if (input == signature.inputs().end()) {
      return absl::InvalidArgumentError("input tensor alias not found in signature: " + alias +
                                        ". Inputs expected to be in the set {" + JoinKeys(signature.inputs()) +
                                        "}.");
    }
    tensorflow::Tensor tensor;
    if (!tensor.FromProto(proto)) return absl::InvalidArgumentError("tensor parsing error: " + alias);
    feeds.emplace_back(input->second.name(), std::move(tensor));
  }
  std::vector<std::string> fetches, aliases;
  std::set<std::string> seen;
  for (const auto& alias : request.output_filter) {
    const auto output = signature.outputs().find(alias);
    if (output == signature.outputs().end()) {
      return absl::InvalidArgumentError("output tensor alias not found in signature: " + alias +
                                        " Outputs expected to be in the set {" + JoinKeys(signature.outputs()) +
                                        "}.");
    }
    if (!seen.insert(alias).second) return absl::InvalidArgumentError("duplicate output tensor alias: " + alias);
    fetches.push_back(output->second.name());
    aliases.push_back(alias);
  }
  if (fetches.empty()) {
    for (const auto& [alias, info] : signature.outputs()) {
      fetches.push_back(info.name());
      aliases.push_back(alias);
    }
  }
  std::vector<tensorflow::Tensor> results;
  tensorflow::RunMetadata metadata;
  TF_RETURN_IF_ERROR(bundle.session->Run(tensorflow::RunOptions(), feeds, fetches, {}, &results, &metadata));
  outputs->clear();
  for (size_t i = 0; i < results.size(); ++i) {
    tensorflow::TensorProto proto;
    results[i].AsProtoField(&proto);  // TF Serving's default serialization
    outputs->emplace_back(aliases[i], std::move(proto));
  }
  return absl::OkStatus();
}

// -- JSON on stdout -------------------------------------------------------------

std::string Quote(std::string_view text) {
  std::string out = "\"";
  for (const unsigned char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\u%04x", c);
      out += escaped;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

std::string TensorInfoJson(const tensorflow::TensorInfo& info) {
  std::string shape = "null";  // unknown rank
  if (info.has_tensor_shape() && !info.tensor_shape().unknown_rank()) {
    shape = "[";
    for (int i = 0; i < info.tensor_shape().dim_size(); ++i) {
      shape += (i ? ", " : "") + std::to_string(info.tensor_shape().dim(i).size());
    }
    shape += "]";
  }
  std::string name = info.name();
  if (info.encoding_case() != tensorflow::TensorInfo::kName) name = "";  // composite: no single tensor
  return "{\"name\": " + Quote(name) + ", \"dtype\": " + Quote(tensorflow::DataType_Name(info.dtype())) +
         ", \"shape\": " + shape + "}";
}

std::string TensorMapJson(const google::protobuf::Map<std::string, tensorflow::TensorInfo>& map) {
  const std::map<std::string, tensorflow::TensorInfo> sorted(map.begin(), map.end());
  std::string out = "{";
  for (const auto& [alias, info] : sorted) {
    out += (out.size() > 1 ? ", " : "") + Quote(alias) + ": " + TensorInfoJson(info);
  }
  return out + "}";
}

std::string SignaturesJson(const tensorflow::MetaGraphDef& meta_graph) {
  const std::map<std::string, tensorflow::SignatureDef> sorted(meta_graph.signature_def().begin(),
                                                               meta_graph.signature_def().end());
  std::string out = "{";
  for (const auto& [name, signature] : sorted) {
    out += std::string(out.size() > 1 ? "," : "") + "\n    " + Quote(name) +
           ": {\"method_name\": " + Quote(signature.method_name()) +
           ", \"inputs\": " + TensorMapJson(signature.inputs()) +
           ", \"outputs\": " + TensorMapJson(signature.outputs()) + "}";
  }
  return out + "\n  }";
}

// -- main -----------------------------------------------------------------------

int Fail(const std::string& what, const Status& status) {
  std::fprintf(stderr, "savedmodel_run: %s: %s\n", what.c_str(), status.ToString().c_str());
  return 1;
}

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Calls `each(index, request)` for every record of a PredictionLog TFRecord file.
template <typename Each>
Status ForEachRequest(const std::string& path, int max_records, Each each) {
  std::unique_ptr<tensorflow::RandomAccessFile> file;
  TF_RETURN_IF_ERROR(tensorflow::Env::Default()->NewRandomAccessFile(path, &file));
  tensorflow::io::SequentialRecordReader reader(file.get(), tensorflow::io::RecordReaderOptions());
  tensorflow::tstring record;
  for (int index = 0;; ++index) {
    const Status read = reader.ReadRecord(&record);
    if (absl::IsOutOfRange(read)) return absl::OkStatus();
    if (!read.ok()) return absl::DataLossError("record " + std::to_string(index) + ": " + read.ToString());
    if (index >= max_records) {
      return absl::InvalidArgumentError("more than " + std::to_string(max_records) + " records");
    }
    PredictRequest request;
    Status status = ParsePredictionLog(std::string_view(record.data(), record.size()), &request);
    if (status.ok()) status = each(index, request);
    if (!status.ok()) return absl::Status(status.code(), "record " + std::to_string(index) + ": " +
                                                             std::string(status.message()));
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2 && argc != 4) {
    std::fprintf(stderr, "usage: %s VERSION_DIR [REQUESTS RESPONSES]\n", argv[0]);
    return 2;
  }
  const std::string version_dir = argv[1];
  const std::string base = std::string(tensorflow::io::Basename(version_dir));
  const bool numeric = !base.empty() && base.size() < 19 &&
                       std::all_of(base.begin(), base.end(), [](unsigned char c) { return std::isdigit(c); });
  const int64_t version = numeric ? std::stoll(base) : 0;  // the directory's name, as TF Serving numbers it

  auto start = std::chrono::steady_clock::now();
  tensorflow::SavedModelBundle bundle;
  Status status = tensorflow::LoadSavedModel(tensorflow::SessionOptions(), tensorflow::RunOptions(), version_dir,
                                             {kServeTag}, &bundle);
  if (!status.ok()) return Fail("loading " + version_dir, status);
  const double load_seconds = SecondsSince(start);

  // Warmup, as TF Serving replays it after the load: every record must run.
  start = std::chrono::steady_clock::now();
  const std::string warmup =
      tensorflow::io::JoinPath(version_dir, tensorflow::kSavedModelAssetsExtraDirectory, kWarmupFile);
  std::vector<std::string> replayed;
  if (tensorflow::Env::Default()->FileExists(warmup).ok()) {
    status = ForEachRequest(warmup, kMaxWarmupRecords, [&](int, const PredictRequest& request) -> Status {
      std::string signature;
      std::vector<std::pair<std::string, tensorflow::TensorProto>> outputs;
      TF_RETURN_IF_ERROR(RunPredict(bundle, request, &signature, &outputs));
      replayed.push_back(signature);
      return absl::OkStatus();
    });
    if (!status.ok()) return Fail("warmup " + warmup, status);
  }
  const double warmup_seconds = SecondsSince(start);

  int requests = 0;
  if (argc == 4) {
    std::unique_ptr<tensorflow::WritableFile> file;
    status = tensorflow::Env::Default()->NewWritableFile(argv[3], &file);
    if (!status.ok()) return Fail(std::string("creating ") + argv[3], status);
    tensorflow::io::RecordWriter writer(file.get(), tensorflow::io::RecordWriterOptions());
    status = ForEachRequest(argv[2], INT32_MAX, [&](int, const PredictRequest& request) -> Status {
      std::string signature;
      std::vector<std::pair<std::string, tensorflow::TensorProto>> outputs;
      TF_RETURN_IF_ERROR(RunPredict(bundle, request, &signature, &outputs));
      ++requests;
      return writer.WriteRecord(SerializeResponse(request, signature, version, outputs));
    });
    if (!status.ok()) return Fail(std::string("requests ") + argv[2], status);
    status = writer.Close();
    if (status.ok()) status = file->Close();
    if (!status.ok()) return Fail(std::string("writing ") + argv[3], status);
  }

  std::string warmup_json = "[";
  for (size_t i = 0; i < replayed.size(); ++i) warmup_json += (i ? ", " : "") + Quote(replayed[i]);
  warmup_json += "]";
  std::printf("{\n  \"version_dir\": %s,\n  \"load_seconds\": %.3f,\n  \"warmup_seconds\": %.3f,\n"
              "  \"warmup\": %s,\n  \"requests\": %d,\n  \"signatures\": %s\n}\n",
              Quote(version_dir).c_str(), load_seconds, warmup_seconds, warmup_json.c_str(), requests,
              SignaturesJson(bundle.meta_graph_def).c_str());
  return 0;
}
