// check.cpp — the chaos suite's checker: reads a history (JSON lines, see
// history.h) and the servers' logs, prints every violation found and one
// summary line, exits 1 on any violation (2 on usage or read errors).
//
//   chaos-check [--budget STEPS] [--min-success PCT] [--max-gap SECS]
//               [--no-majority] [--log NODE=FILE]... [--max-report N] HISTORY
//
// Rules (test/chaos/README.md explains them):
//   lin        every map key (versioned register) and counter is linearizable
//   lin-budget the search for one key ran out of budget: a failure, not a pass
//   final      the final reads after the whole-cluster crash agree with every
//              acknowledged write; counters within their bounds
//   lock       no two holds of a lock overlap unless the earlier holder was
//              told (55000, lost connection, ...); tokens follow grant order;
//              no acquire returns after a larger token was returned
//   semaphore  never more holders than permits (same excuse)
//   election   one leader per term, terms never go back in real time
//   version    a version names one write of a key
//   avail      every node answers a write after each heal; enough successes;
//              no long stall (not with --no-majority)
//   log        a raft worker restarting more than twice in a row on the same
//              error, a server process dying of a signal, a PANIC
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "history.h"
#include "lin.h"

using namespace chaos;

namespace {

struct Options {
    uint64_t budget = 10000000;
    double min_success = 50.0;
    double max_gap_s = 20.0;
    bool no_majority = false;
    int max_report = 5;
    std::vector<std::pair<int, std::string>> logs;
    std::string history;
};

struct Violation {
    std::string kind;
    std::string text;
};

struct Checker {
    Options opt;
    History h;
    std::vector<Violation> violations;
    std::vector<std::vector<size_t>> by_client; // op indices per client, by invoke
    std::map<int, size_t> client_index;
    std::vector<std::string> infos; // statistics lines

    void violation(const std::string &kind, const std::string &text) { violations.push_back({kind, text}); }

    /* Session leases rest on the drift bound (docs/coordination.md): a
     * clock stepped beyond it may expire a session the node still vouches
     * for, so a holder can lose a lock without being told.  A lease rule
     * broken while such a step was in effect (from 2 s before its recorded
     * start — it is recorded once verified — to one session timeout after
     * its end) is reported as expected, not as a violation. */
    std::vector<std::string> expected_beyond_bound;
    bool beyond_bound_clock_near(int64_t from, int64_t to) const
    {
        for (const Fault &f : h.faults)
            if (f.kind == "clock-beyond-bound" && f.start - 2000000 <= to && f.end + 6000000 >= from)
                return true;
        return false;
    }
    void lease_violation(const std::string &kind, const std::string &text, int64_t from, int64_t to)
    {
        if (beyond_bound_clock_near(from, to))
            expected_beyond_bound.push_back(kind + ": " + text);
        else
            violation(kind, text);
    }

    const Op &op(size_t i) const { return h.ops[i]; }

    // the op the same client invoked next after ops[i], or nullptr
    const Op *next_of(size_t i) const
    {
        auto it = client_index.find(h.ops[i].client);
        if (it == client_index.end())
            return nullptr;
        const std::vector<size_t> &seq = by_client[it->second];
        auto pos = std::lower_bound(seq.begin(), seq.end(), i, [&](size_t a, size_t b) {
            const Op &x = h.ops[a], &y = h.ops[b];
            return x.invoke != y.invoke ? x.invoke < y.invoke : a < b;
        });
        if (pos == seq.end() || *pos != i)
            return nullptr;
        ++pos;
        return pos == seq.end() ? nullptr : &h.ops[*pos];
    }

    void index_clients()
    {
        for (size_t i = 0; i < h.ops.size(); i++) {
            auto it = client_index.find(h.ops[i].client);
            if (it == client_index.end()) {
                it = client_index.emplace(h.ops[i].client, by_client.size()).first;
                by_client.emplace_back();
            }
            by_client[it->second].push_back(i);
        }
        for (auto &seq : by_client)
            std::sort(seq.begin(), seq.end(), [&](size_t a, size_t b) {
                const Op &x = h.ops[a], &y = h.ops[b];
                return x.invoke != y.invoke ? x.invoke < y.invoke : a < b;
            });
    }

    // ---------------------------------------------------------------- maps
    void check_maps()
    {
        std::map<std::string, std::vector<size_t>> keys;
        for (size_t i = 0; i < h.ops.size(); i++)
            if (h.ops[i].f.rfind("map_", 0) == 0)
                keys[h.ops[i].key].push_back(i);
        for (auto &kv : keys)
            check_map_key(kv.first, kv.second);
    }

    static bool is_cas(const Op &o) { return o.f == "map_cas" || (o.f == "map_put" && o.has_if_version); }

    void check_map_key(const std::string &key, const std::vector<size_t> &idx)
    {
        std::unordered_map<std::string, int64_t> value_id;
        auto id_of = [&](const std::string &v) {
            auto it = value_id.find(v);
            if (it != value_id.end())
                return it->second;
            int64_t id = (int64_t)value_id.size();
            value_id.emplace(v, id);
            return id;
        };
        /* what every value's version is, as far as anyone saw it */
        std::unordered_map<std::string, int64_t> version_of;
        std::map<int64_t, std::string> value_at;
        std::set<std::string> observed;
        std::unordered_map<std::string, int64_t> first_seen; // value -> earliest completion of a read that saw it
        auto note_version = [&](const std::string &value, int64_t ver, const Op &o) {
            auto it = version_of.find(value);
            if (it == version_of.end())
                version_of.emplace(value, ver);
            else if (it->second != ver)
                violation("version", "key " + key + ": value " + json_quoted(value) + " seen with versions " +
                                         std::to_string(it->second) + " and " + std::to_string(ver) + " — " +
                                         describe(o));
            auto jt = value_at.find(ver);
            if (jt == value_at.end())
                value_at.emplace(ver, value);
            else if (jt->second != value)
                violation("version", "key " + key + ": version " + std::to_string(ver) + " names two writes, " +
                                         json_quoted(jt->second) + " and " + json_quoted(value) + " — " +
                                         describe(o));
        };
        for (size_t i : idx) {
            const Op &o = op(i);
            if (o.outcome != Outcome::Ok)
                continue;
            if ((o.f == "map_put" || o.f == "map_cas") && o.result.kind == Json::Int)
                note_version(o.value, o.result.i, o);
            std::string seen;
            bool saw = false;
            if (o.f == "map_get_entry" && o.result.kind == Json::Object && !o.result["version"].is_null()) {
                note_version(o.result["value"].as_str(), o.result["version"].as_int(), o);
                seen = o.result["value"].as_str();
                saw = true;
            }
            if (o.f == "map_get" && o.result.kind == Json::String) {
                seen = o.result.s;
                saw = true;
            }
            if (saw) {
                observed.insert(seen);
                auto it = first_seen.find(seen);
                if (it == first_seen.end() || o.complete < it->second)
                    first_seen[seen] = o.complete;
            }
        }

        std::vector<LOp> lops;
        std::vector<size_t> src;
        for (size_t i : idx) {
            const Op &o = op(i);
            if (o.outcome == Outcome::Fail)
                continue;
            LOp l;
            l.invoke = o.invoke;
            l.complete = o.complete;
            l.info = o.outcome == Outcome::Info;
            if (o.f == "map_get" || o.f == "map_get_entry") {
                if (l.info)
                    continue; /* an unanswered read says nothing */
                if (o.f == "map_get") {
                    l.kind = LKind::MapGet;
                    l.res = o.result.kind == Json::String ? id_of(o.result.s) : -1;
                } else {
                    l.kind = LKind::MapGetEntry;
                    if (o.result.kind == Json::Object && !o.result["version"].is_null()) {
                        l.res = id_of(o.result["value"].as_str());
                        l.res2 = o.result["version"].as_int();
                    } else
                        l.res = -1;
                }
            } else if (o.f == "map_put" || o.f == "map_cas") {
                l.kind = is_cas(o) ? LKind::MapCas : LKind::MapPut;
                l.a = id_of(o.value);
                l.b = o.if_version;
                if (l.info) {
                    auto it = version_of.find(o.value);
                    l.res = it == version_of.end() ? -1 : it->second;
                    if (observed.count(o.value)) {
                        /* someone read its value: it took effect, before the
                         * first read that saw it returned */
                        l.info = false;
                        l.complete = std::max(first_seen[o.value], o.invoke);
                    } else {
                        /* nobody saw its value: which value it wrote does not
                         * matter, only that some unseen value was there */
                        l.a = id_of(std::string("\x01unseen"));
                    }
                } else if (o.result.kind == Json::Int)
                    l.res = o.result.i;
                else
                    l.res = l.kind == LKind::MapCas ? -2 : -1;
            } else if (o.f == "map_remove") {
                l.kind = LKind::MapRemove;
                l.b = o.has_if_version ? o.if_version : -1;
                l.res = l.info ? -1 : (o.result.as_bool() ? 1 : 0);
            } else
                continue;
            l.src = i;
            lops.push_back(l);
            src.push_back(i);
        }
        run_lin("map key " + key, lops, false, value_id);
        check_map_final(key, idx);
    }

    void run_lin(const std::string &what, const std::vector<LOp> &lops, bool counter,
                 const std::unordered_map<std::string, int64_t> &value_id)
    {
        if (lops.empty())
            return;
        LinResult r = check_linearizable(lops, counter, opt.budget);
        if (r.verdict == LinVerdict::Ok)
            return;
        std::vector<std::string> names(value_id.size());
        for (auto &kv : value_id)
            names[(size_t)kv.second] = kv.first;
        auto state_text = [&](const LState &s) {
            if (counter)
                return std::to_string(s.a);
            if (s.a < 0)
                return std::string("absent");
            return json_quoted(names[(size_t)s.a]) + " version " + (s.b < 0 ? "?" : std::to_string(s.b));
        };
        std::string text = what + ": ";
        if (r.verdict == LinVerdict::Budget)
            text += "search exceeded its budget of " + std::to_string(opt.budget) +
                    " steps (counted as a failure); deepest point: ";
        else
            text += "not linearizable; ";
        text += std::to_string(r.deepest) + " ops placed, state " + state_text(r.stuck_state);
        if (r.stuck >= 0)
            text += ", cannot place " + describe(op(lops[(size_t)r.stuck].src));
        if (!r.prefix.empty()) {
            text += "; last placed:";
            for (long p : r.prefix)
                text += "\n        " + describe(op(lops[(size_t)p].src));
        }
        violation(r.verdict == LinVerdict::Budget ? "lin-budget" : "lin", text);
    }

    /* After the whole-cluster crash: the final read must show the effect of
     * a write that may be the last one — one not known to be followed by an
     * acknowledged write. */
    void check_map_final(const std::string &key, const std::vector<size_t> &idx)
    {
        const Op *final_read = nullptr;
        for (size_t i : idx) {
            const Op &o = op(i);
            if (o.final && o.outcome == Outcome::Ok && (o.f == "map_get" || o.f == "map_get_entry"))
                if (!final_read || o.invoke > final_read->invoke)
                    final_read = &o;
        }
        bool had_final = has_final_phase();
        for (size_t i : idx)
            if (op(i).final)
                had_final = true;
        if (!final_read) {
            if (had_final)
                violation("final", "map key " + key + ": no final read succeeded");
            return;
        }
        std::string final_value;
        bool final_present = false;
        if (final_read->f == "map_get") {
            final_present = final_read->result.kind == Json::String;
            final_value = final_read->result.as_str();
        } else if (final_read->result.kind == Json::Object && !final_read->result["version"].is_null()) {
            final_present = true;
            final_value = final_read->result["value"].as_str();
        }
        auto effective = [](const Op &o) {
            if (o.outcome != Outcome::Ok)
                return false;
            if (o.f == "map_put" || o.f == "map_cas")
                return o.result.kind == Json::Int;
            if (o.f == "map_remove")
                return o.result.as_bool();
            return false;
        };
        auto writes = [](const Op &o) { return o.f == "map_put" || o.f == "map_cas" || o.f == "map_remove"; };
        int64_t last_ack_invoke = INT64_MIN;
        const Op *last_ack = nullptr;
        for (size_t i : idx) {
            const Op &o = op(i);
            if (!o.final && writes(o) && effective(o) && o.invoke > last_ack_invoke) {
                last_ack_invoke = o.invoke;
                last_ack = &o;
            }
        }
        if (!last_ack)
            return;
        bool explained = false;
        for (size_t i : idx) {
            const Op &o = op(i);
            if (o.final || !writes(o))
                continue;
            if (!(effective(o) || o.outcome == Outcome::Info))
                continue;
            int64_t end = o.outcome == Outcome::Info ? INT64_MAX : o.complete;
            if (end < last_ack_invoke)
                continue; /* certainly before the last acknowledged write */
            bool is_remove = o.f == "map_remove";
            if (final_present ? (!is_remove && o.value == final_value) : is_remove) {
                explained = true;
                break;
            }
        }
        if (!explained)
            violation("final", "map key " + key + ": acknowledged write lost — the final read found " +
                                   (final_present ? json_quoted(final_value) : std::string("nothing")) +
                                   ", but no write that may have been the last one put it there; the last "
                                   "acknowledged write was " +
                                   describe(*last_ack) + "; final read " + describe(*final_read));
    }

    bool has_final_phase() const
    {
        for (auto &ph : h.phases)
            if (ph.first == "final-crash")
                return true;
        return false;
    }

    // ------------------------------------------------------------ counters
    void check_counters()
    {
        std::map<std::string, std::vector<size_t>> keys;
        for (size_t i = 0; i < h.ops.size(); i++)
            if (h.ops[i].f.rfind("counter_", 0) == 0)
                keys[h.ops[i].key].push_back(i);
        static const std::unordered_map<std::string, int64_t> no_values;
        for (auto &kv : keys) {
            std::vector<LOp> lops;
            bool has_cas = false, positive = true;
            int64_t acked = 0, maybe = 0;
            for (size_t i : kv.second) {
                const Op &o = op(i);
                if (o.f == "counter_cas")
                    has_cas = true;
                if (o.f == "counter_incr" && o.delta <= 0)
                    positive = false;
                if (o.f == "counter_incr" && !o.final) {
                    if (o.outcome == Outcome::Ok)
                        acked += o.delta;
                    else if (o.outcome == Outcome::Info)
                        maybe += o.delta;
                }
                if (o.outcome == Outcome::Fail)
                    continue;
                LOp l;
                l.invoke = o.invoke;
                l.complete = o.complete;
                l.info = o.outcome == Outcome::Info;
                l.observed = true;
                l.src = i;
                if (o.f == "counter_incr") {
                    l.kind = LKind::CounterIncr;
                    l.a = o.delta;
                    l.res = o.result.as_int();
                } else if (o.f == "counter_cas") {
                    l.kind = LKind::CounterCas;
                    l.a = o.expected;
                    l.b = o.newv;
                    l.res = o.result.as_bool() ? 1 : 0;
                } else if (o.f == "counter_get") {
                    if (l.info)
                        continue;
                    l.kind = LKind::CounterGet;
                    l.res = o.result.as_int();
                } else
                    continue;
                lops.push_back(l);
            }
            run_lin("counter " + kv.first, lops, true, no_values);

            const Op *final_read = nullptr;
            bool had_final = has_final_phase();
            for (size_t i : kv.second) {
                const Op &o = op(i);
                if (o.final)
                    had_final = true;
                if (o.final && o.f == "counter_get" && o.outcome == Outcome::Ok &&
                    (!final_read || o.invoke > final_read->invoke))
                    final_read = &o;
            }
            if (!final_read) {
                if (had_final)
                    violation("final", "counter " + kv.first + ": no final read succeeded");
                continue;
            }
            if (has_cas || !positive)
                continue;
            int64_t v = final_read->result.as_int();
            if (v < acked)
                violation("final", "counter " + kv.first + ": acknowledged increments lost — final value " +
                                       std::to_string(v) + " < " + std::to_string(acked) +
                                       " acknowledged (+" + std::to_string(maybe) + " indeterminate)");
            else if (v > acked + maybe)
                violation("final", "counter " + kv.first + ": more applied than attempted (a duplicate apply?) — "
                                       "final value " + std::to_string(v) + " > " + std::to_string(acked) +
                                       " acknowledged + " + std::to_string(maybe) + " indeterminate");
        }
    }

    // ------------------------------------------------- locks and semaphores
    struct Hold {
        size_t acq;        // op index of the grant
        int64_t token = 0; // locks
        int64_t granted;   // the acquire's completion: held from here at the latest
        bool clean = false;
        int64_t end = 0; // clean: the release's invocation (held at least until then)
        std::string ending;
    };

    Hold make_hold(size_t i, const char *release_f)
    {
        const Op &a = op(i);
        Hold hd;
        hd.acq = i;
        hd.granted = a.complete;
        const Op *nx = next_of(i);
        if (!nx) {
            hd.ending = "client ended";
            return hd;
        }
        if (nx->f == release_f && nx->key == a.key && nx->outcome == Outcome::Ok) {
            if (nx->result.as_bool()) {
                hd.clean = true;
                hd.end = nx->invoke;
                hd.ending = "released";
            } else {
                hd.ending = "release said not held";
                lease_violation(std::string(release_f) == "lock_release" ? "lock" : "semaphore",
                                std::string(a.f) + " granted, but the holder's next call found nothing held "
                                                   "without being told its session expired: " +
                                    describe(a) + " then " + describe(*nx),
                                a.invoke, nx->complete);
            }
            return hd;
        }
        hd.ending = nx->sqlstate == "55000" ? "told: session expired" : "next call " + std::string(outcome_name(nx->outcome));
        return hd;
    }

    void check_locks()
    {
        std::map<std::string, std::vector<Hold>> locks;
        std::map<std::string, std::vector<size_t>> acquires;
        for (size_t i = 0; i < h.ops.size(); i++) {
            const Op &o = op(i);
            if (o.f != "lock_acquire" || o.outcome != Outcome::Ok || o.result.kind != Json::Int)
                continue;
            Hold hd = make_hold(i, "lock_release");
            hd.token = o.result.i;
            locks[o.key].push_back(hd);
        }
        for (auto &kv : locks) {
            const std::string &name = kv.first;
            std::vector<Hold> &hs = kv.second;
            /* one token, one grant */
            std::map<int64_t, size_t> by_token;
            for (size_t k = 0; k < hs.size(); k++) {
                auto it = by_token.find(hs[k].token);
                if (it != by_token.end()) {
                    const Op &x = op(hs[it->second].acq), &y = op(hs[k].acq);
                    if (!(x.client == y.client && x.conn == y.conn))
                        violation("lock", "lock " + name + ": token " + std::to_string(hs[k].token) +
                                              " granted twice: " + describe(x) + " and " + describe(y));
                } else
                    by_token.emplace(hs[k].token, k);
            }
            /* tokens follow real-time grant order: a grant that completed
             * before another was asked for has the smaller token */
            std::vector<size_t> by_complete(hs.size()), by_invoke(hs.size());
            for (size_t k = 0; k < hs.size(); k++)
                by_complete[k] = by_invoke[k] = k;
            std::sort(by_complete.begin(), by_complete.end(),
                      [&](size_t x, size_t y) { return op(hs[x].acq).complete < op(hs[y].acq).complete; });
            std::sort(by_invoke.begin(), by_invoke.end(),
                      [&](size_t x, size_t y) { return op(hs[x].acq).invoke < op(hs[y].acq).invoke; });
            size_t c = 0;
            long best = -1;
            int reported = 0;
            for (size_t k : by_invoke) {
                const Op &b = op(hs[k].acq);
                while (c < by_complete.size() && op(hs[by_complete[c]].acq).complete < b.invoke) {
                    if (best < 0 || hs[by_complete[c]].token > hs[(size_t)best].token)
                        best = (long)by_complete[c];
                    c++;
                }
                if (best >= 0 && hs[(size_t)best].token >= hs[k].token && hs[(size_t)best].token != hs[k].token &&
                    reported++ < opt.max_report)
                    violation("lock", "lock " + name + ": fencing token went backwards: " +
                                          describe(op(hs[(size_t)best].acq)) + " completed before " + describe(b) +
                                          " was invoked, yet has the larger token");
            }
            /* no overlap: a later grant (larger token) completes after the
             * release of every earlier hold that ended cleanly */
            std::vector<size_t> by_tok(hs.size());
            for (size_t k = 0; k < hs.size(); k++)
                by_tok[k] = k;
            std::sort(by_tok.begin(), by_tok.end(), [&](size_t x, size_t y) { return hs[x].token < hs[y].token; });
            long min_later = -1; // among holds with larger tokens: the one granted first
            reported = 0;
            int stale_reported = 0;
            for (size_t r = by_tok.size(); r-- > 0;) {
                Hold &a = hs[by_tok[r]];
                if (a.clean && min_later >= 0 && hs[(size_t)min_later].granted < a.end &&
                    hs[(size_t)min_later].token != a.token && reported++ < opt.max_report) {
                    Hold &b = hs[(size_t)min_later];
                    lease_violation("lock", "lock " + name + ": granted while held (double grant): " +
                                                describe(op(a.acq)) + " held it until its release at " +
                                                std::to_string(a.end) + ", but " + describe(op(b.acq)) +
                                                " was granted it before that",
                                    op(a.acq).invoke, a.end);
                }
                /* a grant is never returned once the lock has moved on:
                 * a later grant (larger token) that completed before this
                 * one did means this holder's session was closed before its
                 * acquire answered — it must have said 55000 instead (the
                 * stale grant of issue 8; etcd 3.4.3's lock bug) */
                if (min_later >= 0 && hs[(size_t)min_later].granted < a.granted &&
                    hs[(size_t)min_later].token != a.token && stale_reported++ < opt.max_report) {
                    Hold &b = hs[(size_t)min_later];
                    lease_violation("lock", "lock " + name + ": stale grant: " + describe(op(a.acq)) +
                                                " returned token " + std::to_string(a.token) + " after " +
                                                describe(op(b.acq)) + " had been granted the larger token " +
                                                std::to_string(b.token),
                                    op(a.acq).invoke, a.granted);
                }
                if (min_later < 0 || a.granted < hs[(size_t)min_later].granted)
                    min_later = (long)by_tok[r];
            }
            size_t told = 0, clean = 0;
            for (auto &hd : hs) {
                if (hd.clean)
                    clean++;
                if (hd.ending.rfind("told", 0) == 0)
                    told++;
            }
            infos.push_back("lock " + name + ": " + std::to_string(hs.size()) + " grants, " + std::to_string(clean) +
                            " released cleanly, " + std::to_string(told) + " told their session expired");
        }
        check_final_locks();
    }

    void check_final_locks()
    {
        /* the final phase acquires each lock once more after the restart: its
         * token must beat every token granted before (covered above by the
         * real-time order) and it must be granted at all */
        std::set<std::string> names, got;
        for (const Op &o : h.ops)
            if (o.final && o.f == "lock_acquire") {
                names.insert(o.key);
                if (o.outcome == Outcome::Ok && o.result.kind == Json::Int)
                    got.insert(o.key);
            }
        for (auto &n : names)
            if (!got.count(n))
                violation("final", "lock " + n + ": could not be acquired after the final restart");
    }

    void check_semaphores()
    {
        std::map<std::string, int64_t> permits;
        for (const Op &o : h.ops)
            if (o.f == "sem_create" && o.outcome != Outcome::Fail && !permits.count(o.key))
                permits[o.key] = o.permits;
        std::map<std::string, std::vector<Hold>> sems;
        for (size_t i = 0; i < h.ops.size(); i++) {
            const Op &o = op(i);
            if (o.f != "sem_acquire" || o.outcome != Outcome::Ok || !o.result.as_bool())
                continue;
            Hold hd = make_hold(i, "sem_release");
            hd.token = o.permits;
            sems[o.key].push_back(hd);
        }
        for (auto &kv : sems) {
            const std::string &name = kv.first;
            if (!permits.count(name)) {
                infos.push_back("semaphore " + name + ": no semaphore_create in the history, not checked");
                continue;
            }
            int64_t p = permits[name];
            std::vector<Hold> &hs = kv.second;
            std::vector<const Hold *> clean;
            int64_t longest = 0;
            for (auto &hd : hs)
                if (hd.clean) {
                    clean.push_back(&hd);
                    longest = std::max(longest, hd.end - hd.granted);
                }
            std::sort(clean.begin(), clean.end(), [](const Hold *x, const Hold *y) { return x->granted < y->granted; });
            int reported = 0;
            for (auto &x : hs) {
                const Op &xo = op(x.acq);
                /* holders certainly holding through the whole of x's acquire */
                int64_t held = 0;
                std::vector<const Hold *> who;
                auto hi = std::lower_bound(clean.begin(), clean.end(), xo.invoke,
                                           [](const Hold *c, int64_t t) { return c->granted < t; });
                for (auto it = hi; it != clean.begin();) {
                    --it;
                    const Hold *c = *it;
                    if (c->granted < xo.invoke - longest)
                        break;
                    if (c == &x || c->end <= xo.complete)
                        continue;
                    held += c->token;
                    who.push_back(c);
                }
                if (held + x.token > p && reported++ < opt.max_report) {
                    std::string t = "semaphore " + name + " (" + std::to_string(p) + " permits) over-granted: " +
                                    describe(xo) + " was granted while these held it throughout:";
                    for (auto *c : who)
                        t += "\n        " + describe(op(c->acq));
                    violation("semaphore", t);
                }
            }
            infos.push_back("semaphore " + name + ": " + std::to_string(hs.size()) + " grants, " +
                            std::to_string(clean.size()) + " released cleanly");
        }
        /* after the final restart every permit is back (the final phase
         * polls for a while: its last answer counts) */
        std::map<std::string, const Op *> last_available;
        for (const Op &o : h.ops)
            if (o.final && o.f == "sem_available" && permits.count(o.key) &&
                (!last_available[o.key] || o.invoke > last_available[o.key]->invoke))
                last_available[o.key] = &o;
        for (auto &kv : last_available) {
            const Op &o = *kv.second;
            {
                if (o.outcome != Outcome::Ok)
                    violation("final", "semaphore " + o.key + ": final read failed");
                else if (o.result.as_int(-1) != permits[o.key])
                    violation("final", "semaphore " + o.key + ": " + std::to_string(o.result.as_int(-1)) +
                                           " of " + std::to_string(permits[o.key]) +
                                           " permits available after the final restart with no holder left: " +
                                           describe(o));
            }
        }
    }

    // ----------------------------------------------------------- elections
    void check_elections()
    {
        std::map<std::string, std::vector<size_t>> obs;
        for (size_t i = 0; i < h.ops.size(); i++) {
            const Op &o = op(i);
            if (o.f.rfind("election_", 0) == 0 && o.outcome == Outcome::Ok && o.result.kind == Json::Object &&
                !o.result["term"].is_null())
                obs[o.key].push_back(i);
        }
        for (auto &kv : obs) {
            const std::string &name = kv.first;
            std::map<int64_t, size_t> leader_of;
            int reported = 0;
            for (size_t i : kv.second) {
                const Op &o = op(i);
                int64_t term = o.result["term"].as_int();
                if (o.result["leader"].is_null())
                    continue; /* no leader (the line emptied): not a second one */
                auto it = leader_of.find(term);
                if (it == leader_of.end())
                    leader_of.emplace(term, i);
                else {
                    const Json &l1 = op(it->second).result["leader"], &l2 = o.result["leader"];
                    if ((l1.is_null() != l2.is_null() || l1.as_str() != l2.as_str()) && reported++ < opt.max_report)
                        violation("election", "election " + name + ": two leaders in term " + std::to_string(term) +
                                                  ": " + describe(op(it->second)) + " and " + describe(o));
                }
            }
            std::vector<size_t> by_complete = kv.second, by_invoke = kv.second;
            std::sort(by_complete.begin(), by_complete.end(),
                      [&](size_t x, size_t y) { return op(x).complete < op(y).complete; });
            std::sort(by_invoke.begin(), by_invoke.end(), [&](size_t x, size_t y) { return op(x).invoke < op(y).invoke; });
            size_t c = 0;
            long best = -1;
            reported = 0;
            for (size_t k : by_invoke) {
                const Op &b = op(k);
                while (c < by_complete.size() && op(by_complete[c]).complete < b.invoke) {
                    if (best < 0 || op(by_complete[c]).result["term"].as_int() > op((size_t)best).result["term"].as_int())
                        best = (long)by_complete[c];
                    c++;
                }
                if (best >= 0 && op((size_t)best).result["term"].as_int() > b.result["term"].as_int() &&
                    reported++ < opt.max_report)
                    violation("election", "election " + name + ": term went back: " + describe(op((size_t)best)) +
                                              " completed before " + describe(b) + " was invoked");
            }
            infos.push_back("election " + name + ": " + std::to_string(kv.second.size()) + " observations, " +
                            std::to_string(leader_of.size()) + " terms");
        }
    }

    // -------------------------------------------------------- availability
    size_t n_ok = 0, n_fail = 0, n_info = 0;
    double success = 0;

    void error_stats()
    {
        std::map<std::string, size_t> errs;
        for (const Op &o : h.ops)
            if (o.outcome != Outcome::Ok && !o.sqlstate.empty())
                errs[o.sqlstate + " " + o.error.substr(0, 120)]++;
        std::vector<std::pair<size_t, std::string>> v;
        for (auto &kv : errs)
            v.emplace_back(kv.second, kv.first);
        std::sort(v.rbegin(), v.rend());
        for (size_t i = 0; i < v.size() && i < 6; i++)
            infos.push_back("error x" + std::to_string(v[i].first) + ": " + v[i].second);
    }

    void check_availability()
    {
        int64_t first = INT64_MAX, final_crash = INT64_MAX;
        for (auto &ph : h.phases)
            if (ph.first == "final-crash")
                final_crash = std::min(final_crash, ph.second);
        std::vector<int64_t> ok_times;
        for (const Op &o : h.ops) {
            if (o.final)
                continue;
            first = std::min(first, o.invoke);
            if (o.outcome == Outcome::Ok) {
                n_ok++;
                if (o.complete < final_crash)
                    ok_times.push_back(o.complete);
            } else if (o.outcome == Outcome::Fail)
                n_fail++;
            else
                n_info++;
        }
        size_t total = n_ok + n_fail + n_info;
        success = total ? 100.0 * (double)n_ok / (double)total : 0;
        bool no_majority = opt.no_majority || h.no_majority;
        if (total == 0) {
            violation("avail", "the history has no operations");
            return;
        }
        if (success < opt.min_success) {
            std::string t = "only " + fmt(success, 1) + "% of operations succeeded (floor " + fmt(opt.min_success, 0) + "%)";
            if (no_majority)
                infos.push_back(t + " — allowed with --no-majority");
            else
                violation("avail", t);
        }
        for (const Probe &p : h.probes)
            if (!p.ok) {
                std::string t = "node " + std::to_string(p.node) + " answered no write within " +
                                fmt((double)(p.complete - p.invoke) / 1e6, 1) + " s after a heal" +
                                (p.after.empty() ? "" : " (" + p.after + ")") + " (line " + std::to_string(p.line) + ")";
                if (no_majority)
                    infos.push_back(t + " — allowed with --no-majority");
                else
                    violation("avail", t);
            }
        /* the longest stretch of the workload (before the final crash) with no success */
        std::sort(ok_times.begin(), ok_times.end());
        int64_t last = first, gap = 0, gap_at = first;
        int64_t end = final_crash != INT64_MAX ? final_crash : 0;
        if (end == 0)
            for (const Op &o : h.ops)
                if (!o.final)
                    end = std::max(end, o.complete);
        for (int64_t t : ok_times) {
            if (t - last > gap) {
                gap = t - last;
                gap_at = last;
            }
            last = t;
        }
        if (end - last > gap) {
            gap = end - last;
            gap_at = last;
        }
        infos.push_back("longest stretch without a successful op: " + fmt((double)gap / 1e6, 1) + " s");
        if ((double)gap / 1e6 > opt.max_gap_s) {
            std::string t = "no operation succeeded for " + fmt((double)gap / 1e6, 1) + " s (from " +
                            std::to_string(gap_at) + "; limit " + fmt(opt.max_gap_s, 0) + " s)";
            if (no_majority)
                infos.push_back(t + " — allowed with --no-majority");
            else
                violation("avail", t);
        }
    }

    static std::string fmt(double v, int prec)
    {
        char b[64];
        snprintf(b, sizeof b, "%.*f", prec, v);
        return b;
    }

    // ---------------------------------------------------------- server logs
    static int64_t parse_log_time(const std::string &line)
    {
        /* "2024-12-06 07:43:00.123 UTC [1234] LOG:  ..." */
        struct tm tm;
        memset(&tm, 0, sizeof tm);
        int ms = 0;
        if (sscanf(line.c_str(), "%d-%d-%d %d:%d:%d.%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
                   &tm.tm_sec, &ms) != 7)
            return -1;
        tm.tm_year -= 1900;
        tm.tm_mon -= 1;
        return (int64_t)timegm(&tm) * 1000000 + (int64_t)ms * 1000;
    }

    bool in_disk_fault(int node, int64_t wall) const
    {
        for (const Fault &f : h.faults)
            /* a halted partition retries with a back-off of up to 8 s for
             * I/O errors (docs/architecture.md): its restarts go on that
             * long after the disk has room again */
            if (f.family == "disk" && f.node == node && wall >= f.wall_start - 1000000 && wall <= f.wall_end + 10000000)
                return true;
        return false;
    }

    size_t internal_errors = 0, worker_exits = 0;

    void check_logs()
    {
        for (auto &nl : opt.logs) {
            std::ifstream in(nl.second);
            if (!in) {
                violation("log", "cannot read server log " + nl.second);
                continue;
            }
            std::map<long, std::string> last_error; // pid -> last ERROR/FATAL text
            std::map<long, std::pair<long, int>> group_restarts; // partition -> (index, restarts in a row)
            std::string streak_msg;
            int streak = 0;
            bool streak_reported = false;
            std::string line;
            while (std::getline(in, line)) {
                size_t lb = line.find(" ["), rb = line.find("] ");
                if (lb == std::string::npos || rb == std::string::npos || rb < lb)
                    continue;
                long pid = atol(line.c_str() + lb + 2);
                std::string rest = line.substr(rb + 2);
                int64_t wall = parse_log_time(line);
                if (rest.find("atomix internal error") != std::string::npos)
                    internal_errors++;
                /* the suite only ever stops servers -m immediate or -m fast */
                if (rest.find("received smart shutdown request") != std::string::npos)
                    infos.push_back("node " + std::to_string(nl.first) +
                                    ": a smart shutdown request (SIGTERM to the postmaster) that this suite does not "
                                    "send: " + line.substr(0, 23));
                if (rest.rfind("ERROR:", 0) == 0 || rest.rfind("FATAL:", 0) == 0)
                    last_error[pid] = rest.substr(rest.find(':') + 1);
                if (rest.rfind("PANIC:", 0) == 0 && !in_disk_fault(nl.first, wall))
                    violation("log", "node " + std::to_string(nl.first) + ": " + line);
                if (rest.find("terminated by signal") != std::string::npos) {
                    int sig = 0;
                    size_t p = rest.find("terminated by signal");
                    sscanf(rest.c_str() + p, "terminated by signal %d", &sig);
                    if (sig == 4 || sig == 6 || sig == 7 || sig == 8 || sig == 11)
                        violation("log", "node " + std::to_string(nl.first) + ": a server process crashed: " + line);
                }
                /* a partition that halts and restarts its group on the same
                 * entry again and again is stuck just like a crash-looping worker */
                size_t g = rest.find("atomix: partition ");
                if (g != std::string::npos && rest.find("restarted its Raft group") != std::string::npos) {
                    long part = -1, index = -1;
                    sscanf(rest.c_str() + g, "atomix: partition %ld", &part);
                    size_t ix = rest.find("from index ");
                    if (ix != std::string::npos)
                        index = atol(rest.c_str() + ix + 11);
                    auto &gr = group_restarts[part];
                    if (gr.first == index)
                        gr.second++;
                    else
                        gr = {index, 1};
                    if (gr.second == 3 && !in_disk_fault(nl.first, wall))
                        violation("log", "node " + std::to_string(nl.first) + ": partition " + std::to_string(part) +
                                             " restarted its Raft group 3 times in a row at index " +
                                             std::to_string(index) + " (stuck on an entry): " + line);
                }
                const char *marker = "background worker \"atomix raft worker\" (PID ";
                size_t m = rest.find(marker);
                if (m != std::string::npos && rest.find("exited with exit code") != std::string::npos) {
                    worker_exits++;
                    long wpid = atol(rest.c_str() + m + strlen(marker));
                    std::string msg = last_error.count(wpid) ? last_error[wpid] : "(no error logged)";
                    while (!msg.empty() && isspace((unsigned char)msg[0]))
                        msg.erase(0, 1);
                    if (msg == streak_msg)
                        streak++;
                    else {
                        streak_msg = msg;
                        streak = 1;
                        streak_reported = false;
                    }
                    if (streak > 2 && !streak_reported && !in_disk_fault(nl.first, wall)) {
                        streak_reported = true;
                        violation("log", "node " + std::to_string(nl.first) + ": the raft worker restarted " +
                                             std::to_string(streak) + " times in a row on the same error: " + msg);
                    }
                }
            }
        }
    }

    // --------------------------------------------------------------- run
    int run()
    {
        h = load_history(opt.history);
        index_clients();
        check_maps();
        check_counters();
        check_locks();
        check_semaphores();
        check_elections();
        check_availability();
        error_stats();
        check_logs();

        std::map<std::string, int> per_kind;
        for (auto &v : violations) {
            if (per_kind[v.kind]++ < opt.max_report)
                printf("VIOLATION [%s] %s\n", v.kind.c_str(), v.text.c_str());
        }
        for (auto &kv : per_kind)
            if (kv.second > opt.max_report)
                printf("VIOLATION [%s] ... and %d more\n", kv.first.c_str(), kv.second - opt.max_report);
        for (auto &s : infos)
            printf("  %s\n", s.c_str());
        if (h.bad_lines)
            printf("  %zu unreadable history line(s) skipped\n", h.bad_lines);
        if (!opt.logs.empty())
            printf("  server logs: %zu raft worker exits, %zu 'atomix internal error' lines\n", worker_exits,
                   internal_errors);

        std::map<std::string, int> faults;
        for (auto &fam : h.families)
            faults[fam] += 0;
        for (const Fault &f : h.faults)
            if (f.verified)
                faults[f.family]++;
        std::string fs;
        for (auto &kv : faults)
            fs += " " + kv.first + "=" + std::to_string(kv.second);
        for (auto &s : h.skipped_families)
            fs += " " + s + "=skipped";
        std::string kinds;
        for (auto &kv : per_kind)
            kinds += (kinds.empty() ? "" : ",") + kv.first + ":" + std::to_string(kv.second);
        for (const std::string &e : expected_beyond_bound)
            printf("EXPECTED beyond the drift bound: %s\n", e.c_str());
        printf("chaos summary: ops=%zu ok=%zu fail=%zu info=%zu success=%.1f%% faults:%s violations=%zu%s%s "
               "beyond-bound=%zu -> %s\n",
               n_ok + n_fail + n_info, n_ok, n_fail, n_info, success, fs.empty() ? " none" : fs.c_str(),
               violations.size(), kinds.empty() ? "" : " ", kinds.empty() ? "" : ("(" + kinds + ")").c_str(),
               expected_beyond_bound.size(), violations.empty() ? "PASS" : "FAIL");
        return violations.empty() ? 0 : 1;
    }
};

void usage()
{
    fprintf(stderr, "usage: chaos-check [--budget STEPS] [--min-success PCT] [--max-gap SECS] [--no-majority]\n"
                    "                   [--log NODE=FILE]... [--max-report N] HISTORY\n");
    exit(2);
}

} // namespace

int main(int argc, char **argv)
{
    Checker c;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        auto need = [&]() -> std::string {
            if (i + 1 >= argc)
                usage();
            return argv[++i];
        };
        if (a == "--budget")
            c.opt.budget = strtoull(need().c_str(), nullptr, 10);
        else if (a == "--min-success")
            c.opt.min_success = atof(need().c_str());
        else if (a == "--max-gap")
            c.opt.max_gap_s = atof(need().c_str());
        else if (a == "--no-majority")
            c.opt.no_majority = true;
        else if (a == "--max-report")
            c.opt.max_report = atoi(need().c_str());
        else if (a == "--log") {
            std::string v = need();
            size_t eq = v.find('=');
            if (eq == std::string::npos)
                usage();
            c.opt.logs.emplace_back(atoi(v.substr(0, eq).c_str()), v.substr(eq + 1));
        } else if (a == "-h" || a == "--help")
            usage();
        else if (!a.empty() && a[0] == '-')
            usage();
        else if (c.opt.history.empty())
            c.opt.history = a;
        else
            usage();
    }
    if (c.opt.history.empty())
        usage();
    try {
        return c.run();
    } catch (const std::exception &e) {
        fprintf(stderr, "chaos-check: %s\n", e.what());
        return 2;
    }
}
