// history.cpp — reading a chaos history file.
#include "history.h"

#include <fstream>
#include <stdexcept>

namespace chaos {

const char *outcome_name(Outcome o)
{
    switch (o) {
    case Outcome::Ok: return "ok";
    case Outcome::Fail: return "fail";
    default: return "info";
    }
}

static std::string result_text(const Json &j)
{
    switch (j.kind) {
    case Json::Null: return "null";
    case Json::Bool: return j.b ? "true" : "false";
    case Json::Int: return std::to_string(j.i);
    case Json::Double: return std::to_string(j.d);
    case Json::String: return json_quoted(j.s);
    case Json::Array: {
        std::string s = "[";
        for (size_t i = 0; i < j.arr.size(); i++)
            s += (i ? "," : "") + result_text(j.arr[i]);
        return s + "]";
    }
    case Json::Object: {
        std::string s = "{";
        bool first = true;
        for (auto &kv : j.obj) {
            s += (first ? "" : ",") + kv.first + ":" + result_text(kv.second);
            first = false;
        }
        return s + "}";
    }
    }
    return "?";
}

std::string describe(const Op &op)
{
    std::string s = "line " + std::to_string(op.line) + ": client " + std::to_string(op.client) + " (node " +
                    std::to_string(op.node) + ", conn " + std::to_string(op.conn) + ") " + op.f + "(" + op.key;
    if (!op.value.empty())
        s += ", " + json_quoted(op.value);
    if (op.has_if_version)
        s += ", if_version=" + std::to_string(op.if_version);
    if (op.f == "counter_incr")
        s += ", " + std::to_string(op.delta);
    if (op.f == "counter_cas")
        s += ", " + std::to_string(op.expected) + " -> " + std::to_string(op.newv);
    if (!op.candidate.empty())
        s += ", " + op.candidate;
    s += ") [" + std::to_string(op.invoke) + ".." + std::to_string(op.complete) + "] " + outcome_name(op.outcome);
    if (op.outcome == Outcome::Ok)
        s += " -> " + result_text(op.result);
    if (!op.sqlstate.empty())
        s += " sqlstate " + op.sqlstate;
    if (op.final)
        s += " (final)";
    return s;
}

History load_history(const std::string &path)
{
    std::ifstream in(path);
    if (!in)
        throw std::runtime_error("cannot read " + path);
    History h;
    std::string line;
    size_t n = 0;
    while (std::getline(in, line)) {
        n++;
        if (line.empty() || line[0] == '#')
            continue;
        Json j;
        try {
            j = parse_json(line);
        } catch (const std::exception &) {
            /* a process killed mid-write leaves at most a torn last line */
            h.bad_lines++;
            continue;
        }
        std::string type = j["type"].as_str("op");
        if (type == "op") {
            Op op;
            op.line = n;
            op.client = (int)j["client"].as_int(-1);
            op.node = (int)j["node"].as_int(0);
            op.conn = (int)j["conn"].as_int(0);
            op.f = j["f"].as_str();
            op.key = j["key"].as_str();
            op.value = j["value"].as_str();
            if (j.has("if_version") && !j["if_version"].is_null()) {
                op.has_if_version = true;
                op.if_version = j["if_version"].as_int();
            }
            op.delta = j["delta"].as_int(1);
            op.expected = j["expected"].as_int();
            op.newv = j["new"].as_int();
            op.permits = j["permits"].as_int(1);
            op.candidate = j["candidate"].as_str();
            op.invoke = j["invoke"].as_int();
            op.complete = j["complete"].as_int(op.invoke);
            std::string o = j["outcome"].as_str("info");
            op.outcome = o == "ok" ? Outcome::Ok : o == "fail" ? Outcome::Fail : Outcome::Info;
            op.result = j["result"];
            op.sqlstate = j["sqlstate"].as_str();
            op.error = j["error"].as_str();
            op.final = j["final"].as_bool(false);
            h.ops.push_back(std::move(op));
        } else if (type == "fault") {
            Fault f;
            f.line = n;
            f.family = j["family"].as_str();
            f.kind = j["kind"].as_str(f.family);
            f.detail = j["detail"].as_str();
            f.node = (int)j["node"].as_int(0);
            f.start = j["start"].as_int();
            f.end = j["end"].as_int(f.start);
            f.wall_start = j["wall_start"].as_int();
            f.wall_end = j["wall_end"].as_int(f.wall_start);
            f.verified = j["verified"].as_bool(false);
            h.faults.push_back(f);
        } else if (type == "probe") {
            Probe p;
            p.line = n;
            p.node = (int)j["node"].as_int(0);
            p.invoke = j["invoke"].as_int();
            p.complete = j["complete"].as_int(p.invoke);
            p.ok = j["ok"].as_bool(false);
            p.tries = (int)j["tries"].as_int(0);
            p.after = j["after"].as_str();
            h.probes.push_back(p);
        } else if (type == "phase") {
            h.phases.emplace_back(j["name"].as_str(), j["time"].as_int());
        } else if (type == "config") {
            h.nodes = (int)j["nodes"].as_int(0);
            h.clients = (int)j["clients"].as_int(0);
            h.no_majority = j["no_majority"].as_bool(false);
            for (auto &s : j["skipped"].arr)
                h.skipped_families.push_back(s.as_str());
            for (auto &s : j["families"].arr)
                h.families.push_back(s.as_str());
        } else if (type == "notice") {
            h.notices.push_back(j["text"].as_str());
        }
    }
    return h;
}

} // namespace chaos
