// gen.cpp — makes synthetic chaos histories for the checker's own tests:
// a simulated linearizable atomix (maps, counters, locks, a semaphore, an
// election) driven by concurrent clients, with indeterminate operations
// that took effect (possibly late) or not; optionally with one kind of bug
// injected.
//
//   chaos-gen [--ops N] [--clients N] [--map-keys N] [--info FRACTION]
//             [--seed N] [--bug stale-read|lost-write|double-grant|
//              token-backwards|dup-apply|unavailable|term-split] [--out FILE]
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <queue>
#include <random>
#include <string>
#include <vector>

#include "json.h"

using chaos::json_quoted;

namespace {

struct Rng {
    std::mt19937_64 g;
    explicit Rng(uint64_t seed) : g(seed) {}
    int64_t between(int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(g); }
    double unit() { return std::uniform_real_distribution<double>(0, 1)(g); }
    bool chance(double p) { return unit() < p; }
};

struct Entry {
    bool present = false;
    std::string value;
    int64_t version = 0;
};

struct Store {
    int64_t index = 1000;
    std::map<std::string, Entry> maps;
    std::map<std::string, int64_t> counters;
    struct Lock {
        long holder = -1; // session (client << 20 | conn)
        long extra = -1;  // a second holder (the double-grant bug)
        int64_t token = 0;
    };
    std::map<std::string, Lock> locks;
    struct Sem {
        int64_t permits = 2;
        std::map<long, int64_t> held;
        int64_t used() const
        {
            int64_t n = 0;
            for (auto &kv : held)
                n += kv.second;
            return n;
        }
    };
    std::map<std::string, Sem> sems;
    struct Election {
        int64_t term = 0;
        std::vector<std::pair<std::string, long>> line; // candidate, session
    };
    std::map<std::string, Election> elections;
    int64_t next_version() { return (++index) << 16; }

    void close_session(long session)
    {
        for (auto &kv : locks) {
            if (kv.second.holder == session) {
                kv.second.holder = kv.second.extra;
                kv.second.extra = -1;
            }
            if (kv.second.extra == session)
                kv.second.extra = -1;
        }
        for (auto &kv : sems)
            kv.second.held.erase(session);
        for (auto &kv : elections) {
            auto &e = kv.second;
            for (size_t i = 0; i < e.line.size();) {
                if (e.line[i].second == session) {
                    if (i == 0)
                        e.term++;
                    e.line.erase(e.line.begin() + (long)i);
                } else
                    i++;
            }
        }
    }
};

struct Rec {
    int client = 0, node = 1, conn = 0;
    std::string f, key, value, candidate;
    bool has_ifv = false;
    int64_t ifv = 0, delta = 0, expected = 0, newv = 0, permits = 0;
    bool has_delta = false, has_cas = false, has_permits = false;
    int64_t invoke = 0, complete = 0;
    std::string outcome = "ok", sqlstate;
    std::string result = "null"; // JSON text
    bool final = false;
    bool delivered = true; // false: applied, but the client never heard back
};

std::string to_json(const Rec &r)
{
    std::string s = "{\"type\":\"op\",\"client\":" + std::to_string(r.client) + ",\"node\":" + std::to_string(r.node) +
                    ",\"conn\":" + std::to_string(r.conn) + ",\"f\":" + json_quoted(r.f) + ",\"key\":" + json_quoted(r.key);
    if (!r.value.empty())
        s += ",\"value\":" + json_quoted(r.value);
    if (r.has_ifv)
        s += ",\"if_version\":" + std::to_string(r.ifv);
    if (r.has_delta)
        s += ",\"delta\":" + std::to_string(r.delta);
    if (r.has_cas)
        s += ",\"expected\":" + std::to_string(r.expected) + ",\"new\":" + std::to_string(r.newv);
    if (r.has_permits)
        s += ",\"permits\":" + std::to_string(r.permits);
    if (!r.candidate.empty())
        s += ",\"candidate\":" + json_quoted(r.candidate);
    s += ",\"invoke\":" + std::to_string(r.invoke) + ",\"complete\":" + std::to_string(r.complete) +
         ",\"outcome\":\"" + r.outcome + "\",\"result\":" + r.result;
    if (!r.sqlstate.empty())
        s += ",\"sqlstate\":" + json_quoted(r.sqlstate);
    if (r.final)
        s += ",\"final\":true";
    return s + "}";
}

struct Gen {
    long ops = 100000;
    int clients = 12;
    int map_keys = 8;
    double info_rate = 0.01;
    uint64_t seed = 1;
    std::string bug;
    FILE *out = stdout;

    Rng rng{1};
    Store st;
    long issued = 0;
    bool bug_done = false;
    int64_t t_unavailable = INT64_MAX;

    struct Client {
        int id = 0, conn = 0, node = 1;
        long seq = 0;
        int64_t next_start = 0; // when its next op starts (known once its last one completed)
        bool in_flight = false;
        std::map<std::string, int64_t> known_version, known_counter;
        std::string holding_lock;
        bool holding_sem = false;
        std::string my_candidate;
        long session() const { return ((long)id << 20) | conn; }
    };
    std::vector<Client> cl;

    struct Event {
        int64_t t;
        long seq;
        std::function<void()> fn;
        bool operator>(const Event &o) const { return t != o.t ? t > o.t : seq > o.seq; }
    };
    std::priority_queue<Event, std::vector<Event>, std::greater<Event>> q;
    long evseq = 0;
    void at(int64_t t, std::function<void()> fn) { q.push(Event{t, evseq++, std::move(fn)}); }

    // per key: the last writes (for the stale-read and lost-write bugs)
    struct WriteInfo {
        std::string value;
        bool present;
        int64_t version;
        int64_t invoke;
        int64_t complete;
        bool ok;
    };
    std::map<std::string, std::vector<WriteInfo>> writes;

    void emit(const Rec &r) { fprintf(out, "%s\n", to_json(r).c_str()); }

    std::string map_key() { return "k" + std::to_string(rng.between(0, map_keys - 1)); }

    void start_op(int c, int64_t t)
    {
        if (issued >= ops)
            return;
        issued++;
        Client &me = cl[(size_t)c];
        me.in_flight = true;
        auto r = std::make_shared<Rec>();
        r->client = me.id;
        r->conn = me.conn;
        r->node = me.node;
        r->invoke = t;
        int64_t lat = rng.between(200, 4000);
        bool info = rng.chance(info_rate);
        bool unavailable = t >= t_unavailable;
        /* what to do: finish a hold first */
        std::function<void(Rec &)> apply;
        if (!me.holding_lock.empty()) {
            std::string name = me.holding_lock;
            r->f = "lock_release";
            r->key = name;
            apply = [this, c, name](Rec &rec) {
                auto &l = st.locks[name];
                long me = cl[(size_t)c].session();
                bool mine = l.holder == me || l.extra == me;
                if (l.holder == me) {
                    l.holder = l.extra;
                    l.extra = -1;
                } else if (l.extra == me)
                    l.extra = -1;
                rec.result = mine ? "true" : "false";
            };
            me.holding_lock.clear();
        } else if (me.holding_sem) {
            r->f = "sem_release";
            r->key = "s0";
            apply = [this, c](Rec &rec) {
                auto &s = st.sems["s0"];
                bool mine = s.held.count(cl[(size_t)c].session()) != 0;
                if (mine)
                    s.held.erase(cl[(size_t)c].session());
                rec.result = mine ? "true" : "false";
            };
            me.holding_sem = false;
        } else {
            double p = rng.unit();
            if (p < 0.55) {
                std::string k = map_key();
                r->key = k;
                double q2 = rng.unit();
                if (q2 < 0.25) {
                    r->f = "map_get";
                    apply = [this, k](Rec &rec) {
                        Entry &e = st.maps[k];
                        std::string v = e.present ? json_quoted(e.value) : "null";
                        if (bug == "stale-read" && !bug_done && issued > ops / 2) {
                            auto &w = writes[k];
                            if (w.size() >= 2 && w.back().ok && w.back().complete < rec.invoke &&
                                w[w.size() - 2].ok && w[w.size() - 2].complete < w.back().invoke) {
                                bug_done = true;
                                v = w[w.size() - 2].present ? json_quoted(w[w.size() - 2].value) : "null";
                            }
                        }
                        rec.result = v;
                    };
                } else if (q2 < 0.45) {
                    r->f = "map_get_entry";
                    apply = [this, k, c](Rec &rec) {
                        Entry &e = st.maps[k];
                        rec.result = e.present ? "{\"value\":" + json_quoted(e.value) +
                                                     ",\"version\":" + std::to_string(e.version) + "}"
                                               : "null";
                        if (e.present && rec.delivered)
                            cl[(size_t)c].known_version[k] = e.version;
                    };
                } else if (q2 < 0.85) {
                    bool cas = q2 >= 0.70;
                    r->f = cas ? "map_cas" : "map_put";
                    r->value = "c" + std::to_string(me.id) + "-" + std::to_string(me.seq++);
                    if (cas) {
                        r->has_ifv = true;
                        auto it = me.known_version.find(k);
                        r->ifv = it != me.known_version.end() ? it->second : 65536;
                    }
                    std::string v = r->value;
                    bool has_ifv = r->has_ifv;
                    int64_t ifv = r->ifv;
                    apply = [this, k, v, has_ifv, ifv, c](Rec &rec) {
                        Entry &e = st.maps[k];
                        if (has_ifv && !(e.present && e.version == ifv)) {
                            rec.result = "null";
                            return;
                        }
                        e.present = true;
                        e.value = v;
                        e.version = st.next_version();
                        rec.result = std::to_string(e.version);
                        if (rec.delivered)
                            cl[(size_t)c].known_version[k] = e.version;
                        writes[k].push_back(WriteInfo{v, true, e.version, rec.invoke, 0, false});
                    };
                } else {
                    r->f = "map_remove";
                    if (rng.chance(0.5)) {
                        r->has_ifv = true;
                        auto it = me.known_version.find(k);
                        r->ifv = it != me.known_version.end() ? it->second : 65536;
                    }
                    bool has_ifv = r->has_ifv;
                    int64_t ifv = r->ifv;
                    apply = [this, k, has_ifv, ifv](Rec &rec) {
                        Entry &e = st.maps[k];
                        bool match = e.present && (!has_ifv || e.version == ifv);
                        if (match) {
                            e.present = false;
                            st.next_version();
                            writes[k].push_back(WriteInfo{"", false, 0, rec.invoke, 0, false});
                        }
                        rec.result = match ? "true" : "false";
                    };
                }
            } else if (p < 0.80) {
                int which = (int)rng.between(0, 3);
                bool incr_only = which < 2;
                std::string k = (incr_only ? "ci" : "cc") + std::to_string(which % 2);
                r->key = k;
                double q2 = rng.unit();
                if (q2 < (incr_only ? 0.7 : 0.4)) {
                    r->f = "counter_incr";
                    r->has_delta = true;
                    r->delta = 1;
                    int64_t d = r->delta;
                    apply = [this, k, d, c](Rec &rec) {
                        int64_t &v = st.counters[k];
                        v += d;
                        if (bug == "dup-apply" && !bug_done && issued > ops / 2 && k == "ci0") {
                            bug_done = true;
                            v += d;
                        }
                        st.next_version();
                        rec.result = std::to_string(v);
                        if (rec.delivered)
                            cl[(size_t)c].known_counter[k] = v;
                    };
                } else if (q2 < 0.7 && !incr_only) {
                    r->f = "counter_cas";
                    r->has_cas = true;
                    r->expected = me.known_counter[k];
                    r->newv = r->expected + rng.between(1, 3);
                    int64_t e = r->expected, n = r->newv;
                    apply = [this, k, e, n, c](Rec &rec) {
                        int64_t &v = st.counters[k];
                        bool ok = v == e;
                        if (ok) {
                            v = n;
                            st.next_version();
                            if (rec.delivered)
                                cl[(size_t)c].known_counter[k] = n;
                        }
                        rec.result = ok ? "true" : "false";
                    };
                } else {
                    r->f = "counter_get";
                    apply = [this, k, c](Rec &rec) {
                        rec.result = std::to_string(st.counters[k]);
                        cl[(size_t)c].known_counter[k] = st.counters[k];
                    };
                }
            } else if (p < 0.90) {
                std::string name = "l" + std::to_string(rng.between(0, 1));
                r->f = "lock_acquire";
                r->key = name;
                apply = [this, name, c](Rec &rec) {
                    auto &l = st.locks[name];
                    bool grant = l.holder < 0;
                    /* a grant while another holds it, observable: the holder's
                     * acquire has returned and its release starts after this
                     * acquire returns */
                    const Client *h = nullptr;
                    for (auto &x : cl)
                        if (x.session() == l.holder)
                            h = &x;
                    if (bug == "double-grant" && !bug_done && issued > ops / 2 && h && h != &cl[(size_t)c] &&
                        !h->in_flight && h->next_start > rec.complete) {
                        bug_done = true;
                        grant = true;
                    }
                    if (!grant) {
                        rec.result = "null";
                        return;
                    }
                    if (l.holder >= 0)
                        l.extra = cl[(size_t)c].session();
                    else
                        l.holder = cl[(size_t)c].session();
                    int64_t token = st.next_version();
                    if (bug == "token-backwards" && !bug_done && issued > ops / 2 && l.token > 0) {
                        bug_done = true;
                        token = l.token - 65536 * 3;
                    }
                    l.token = std::max(l.token, token);
                    rec.result = std::to_string(token);
                    cl[(size_t)c].holding_lock = name;
                };
            } else if (p < 0.95) {
                r->f = "sem_acquire";
                r->key = "s0";
                r->has_permits = true;
                r->permits = 1;
                apply = [this, c](Rec &rec) {
                    auto &s = st.sems["s0"];
                    if (s.used() + 1 > s.permits) {
                        rec.result = "false";
                        return;
                    }
                    s.held[cl[(size_t)c].session()] += 1;
                    rec.result = "true";
                    cl[(size_t)c].holding_sem = true;
                };
            } else {
                r->key = "e0";
                std::string cand = me.my_candidate;
                bool entering = cand.empty() && rng.chance(0.7);
                bool withdrawing = !cand.empty() && rng.chance(0.5);
                if (entering) {
                    cand = "c" + std::to_string(me.id) + "." + std::to_string(me.conn);
                    r->f = "election_enter";
                } else if (withdrawing)
                    r->f = "election_withdraw";
                else
                    r->f = "election_get";
                r->candidate = r->f == "election_get" ? "" : cand;
                std::string f = r->f;
                apply = [this, f, cand, c](Rec &rec) {
                    auto &e = st.elections["e0"];
                    long sess = cl[(size_t)c].session();
                    if (f == "election_enter") {
                        bool in = false;
                        for (auto &x : e.line)
                            in = in || x.first == cand;
                        if (!in) {
                            e.line.emplace_back(cand, sess);
                            if (e.line.size() == 1)
                                e.term++;
                        }
                        cl[(size_t)c].my_candidate = cand;
                    } else if (f == "election_withdraw") {
                        for (size_t i = 0; i < e.line.size(); i++)
                            if (e.line[i].first == cand) {
                                if (i == 0)
                                    e.term++;
                                e.line.erase(e.line.begin() + (long)i);
                                break;
                            }
                        cl[(size_t)c].my_candidate.clear();
                    }
                    std::string leader = e.line.empty() ? "null" : json_quoted(e.line[0].first);
                    if (bug == "term-split" && !bug_done && issued > ops / 2 && !e.line.empty()) {
                        bug_done = true;
                        leader = json_quoted("impostor");
                    }
                    rec.result = "{\"term\":" + std::to_string(e.term) + ",\"leader\":" + leader + "}";
                };
            }
        }

        if (unavailable) {
            /* the cluster stopped answering: everything times out */
            r->complete = t + 5000000;
            r->outcome = rng.chance(0.5) ? "info" : "fail";
            if (r->outcome == "fail")
                r->sqlstate = "57P03";
            else
                r->sqlstate = "57014";
            r->result = "null";
            finish(c, r, true);
            return;
        }
        if (info) {
            bool is_read = r->f == "map_get" || r->f == "map_get_entry" || r->f == "counter_get" || r->f == "election_get";
            bool is_coord = r->f.rfind("lock_", 0) == 0 || r->f.rfind("sem_", 0) == 0 || r->f.rfind("election_", 0) == 0;
            bool applied = !is_read && !is_coord && rng.chance(0.5);
            int64_t timeout = rng.between(3000, 6000);
            r->complete = t + timeout;
            r->outcome = "info";
            r->sqlstate = rng.chance(0.5) ? "57014" : "40003";
            r->result = "null";
            if (applied) {
                int64_t tl = t + rng.between(0, timeout * 3);
                at(tl, [this, apply, r]() {
                    Rec scratch = *r;
                    scratch.delivered = false;
                    apply(scratch);
                });
            }
            /* an unanswered release or acquire: the client drops the connection */
            if (is_coord) {
                cl[(size_t)c].holding_lock.clear();
                cl[(size_t)c].holding_sem = false;
            }
            finish(c, r, true);
            return;
        }
        int64_t tl = t + rng.between(lat / 10, lat * 9 / 10);
        r->complete = t + lat;
        at(tl, [this, apply, r]() { apply(*r); });
        finish(c, r, false);
    }

    void finish(int c, std::shared_ptr<Rec> r, bool reconnect)
    {
        at(r->complete, [this, c, r, reconnect]() {
            Client &me = cl[(size_t)c];
            if (reconnect) {
                /* an error: the client reconnects elsewhere, its session closes */
                st.close_session(me.session());
                me.conn++;
                me.node = (int)rng.between(1, 3);
                me.holding_lock.clear();
                me.holding_sem = false;
                me.my_candidate.clear();
            }
            if (r->outcome == "ok" && (r->f == "map_put" || r->f == "map_cas" || r->f == "map_remove")) {
                auto &w = writes[r->key];
                if (!w.empty() && (r->f == "map_remove" ? r->result == "true" : r->result != "null")) {
                    /* the write this op made is the last one recorded for its key
                     * only if nothing else wrote since; mark what we can */
                    for (auto it = w.rbegin(); it != w.rend(); ++it)
                        if ((r->f == "map_remove" && !it->present) || (it->present && it->value == r->value)) {
                            it->complete = r->complete;
                            it->ok = true;
                            break;
                        }
                }
            }
            emit(*r);
            int64_t think = rng.between(0, 300);
            if (!me.holding_lock.empty() || me.holding_sem)
                think = rng.between(1000, 5000); /* hold it a while */
            me.in_flight = false;
            me.next_start = r->complete + think;
            at(me.next_start, [this, c]() { start_op(c, cl[(size_t)c].next_start); });
        });
    }

    void final_phase(int64_t t)
    {
        fprintf(out, "{\"type\":\"phase\",\"name\":\"final-crash\",\"time\":%lld}\n", (long long)t);
        t += 3000000;
        Rec r;
        r.client = 1000;
        r.final = true;
        auto step = [&](Rec &x) {
            x.invoke = t;
            x.complete = t + 500;
            t += 1000;
            emit(x);
        };
        for (int i = 0; i < map_keys; i++) {
            std::string k = "k" + std::to_string(i);
            Rec x = r;
            x.f = "map_get_entry";
            x.key = k;
            Entry e = st.maps[k];
            if (bug == "lost-write" && !bug_done) {
                auto &w = writes[k];
                if (w.size() >= 2 && w.back().ok && w[w.size() - 2].present && w.back().present &&
                    w[w.size() - 2].ok && w[w.size() - 2].complete < w.back().invoke) {
                    bug_done = true;
                    e.present = true;
                    e.value = w[w.size() - 2].value;
                    e.version = w[w.size() - 2].version;
                }
            }
            x.result = e.present ? "{\"value\":" + json_quoted(e.value) + ",\"version\":" + std::to_string(e.version) + "}"
                                 : "null";
            step(x);
        }
        for (auto k : {"ci0", "ci1", "cc0", "cc1"}) {
            Rec x = r;
            x.f = "counter_get";
            x.key = k;
            x.result = std::to_string(st.counters[k]);
            step(x);
        }
        for (auto k : {"l0", "l1"}) {
            Rec x = r;
            x.f = "lock_acquire";
            x.key = k;
            x.result = std::to_string(st.next_version());
            step(x);
            x.f = "lock_release";
            x.result = "true";
            step(x);
        }
        Rec x = r;
        x.f = "sem_available";
        x.key = "s0";
        x.result = "2";
        step(x);
        x.f = "election_get";
        x.key = "e0";
        auto &e = st.elections["e0"];
        e.term += e.line.empty() ? 0 : 1; /* everyone left: the restart closed their sessions */
        x.result = "{\"term\":" + std::to_string(e.term) + ",\"leader\":null}";
        step(x);
    }

    void run()
    {
        rng = Rng(seed);
        fprintf(out, "{\"type\":\"config\",\"nodes\":3,\"clients\":%d,\"no_majority\":false,"
                     "\"families\":[\"crash\",\"pause\",\"disk\"],\"skipped\":[\"net\",\"clock\"],\"generated\":true}\n",
                clients);
        st.sems["s0"].permits = 2;
        Rec sc;
        sc.client = 999;
        sc.f = "sem_create";
        sc.key = "s0";
        sc.has_permits = true;
        sc.permits = 2;
        sc.invoke = 1;
        sc.complete = 2;
        sc.result = "true";
        emit(sc);
        for (int i = 0; i < clients; i++) {
            Client c;
            c.id = i;
            c.node = 1 + i % 3;
            cl.push_back(c);
        }
        /* an estimate of the run's length, for the unavailable bug */
        int64_t est_end = 1000 + (int64_t)((double)ops / clients * 2600);
        if (bug == "unavailable")
            t_unavailable = est_end * 4 / 10;
        for (int i = 0; i < clients; i++)
            start_op(i, 1000 + rng.between(0, 1000));
        int64_t last = 0;
        while (!q.empty()) {
            Event e = q.top();
            q.pop();
            last = std::max(last, e.t);
            e.fn();
        }
        /* a few faults and the probes after each heal */
        for (int i = 0; i < 5; i++) {
            int64_t s = est_end * (i + 1) / 7, en = s + 2000000;
            const char *fam = i % 3 == 0 ? "crash" : i % 3 == 1 ? "pause" : "disk";
            fprintf(out, "{\"type\":\"fault\",\"family\":\"%s\",\"node\":%d,\"start\":%lld,\"end\":%lld,\"verified\":true}\n",
                    fam, 1 + i % 3, (long long)s, (long long)en);
            for (int n = 1; n <= 3; n++) {
                bool ok = !(bug == "unavailable" && en >= t_unavailable);
                fprintf(out, "{\"type\":\"probe\",\"node\":%d,\"invoke\":%lld,\"complete\":%lld,\"ok\":%s,\"tries\":1}\n", n,
                        (long long)en, (long long)(en + (ok ? 20000 : 10000000)), ok ? "true" : "false");
            }
        }
        final_phase(last + 1000);
    }
};

} // namespace

int main(int argc, char **argv)
{
    Gen g;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        auto need = [&]() -> const char * {
            if (i + 1 >= argc) {
                fprintf(stderr, "chaos-gen: %s needs a value\n", a.c_str());
                exit(2);
            }
            return argv[++i];
        };
        if (a == "--ops")
            g.ops = atol(need());
        else if (a == "--clients")
            g.clients = atoi(need());
        else if (a == "--map-keys")
            g.map_keys = atoi(need());
        else if (a == "--info")
            g.info_rate = atof(need());
        else if (a == "--seed")
            g.seed = strtoull(need(), nullptr, 10);
        else if (a == "--bug")
            g.bug = need();
        else if (a == "--out") {
            g.out = fopen(need(), "w");
            if (!g.out) {
                perror("chaos-gen");
                return 2;
            }
        } else {
            fprintf(stderr, "usage: chaos-gen [--ops N] [--clients N] [--map-keys N] [--info FRACTION] [--seed N] "
                            "[--bug KIND] [--out FILE]\n");
            return 2;
        }
    }
    g.run();
    if (!g.bug.empty() && !g.bug_done && g.bug != "unavailable") {
        fprintf(stderr, "chaos-gen: could not inject bug %s\n", g.bug.c_str());
        return 3;
    }
    if (g.out != stdout)
        fclose(g.out);
    return 0;
}
