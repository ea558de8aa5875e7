// client.cpp — the chaos suite's libpq client: the workload and the small
// helpers the run script needs, all recording into the history file (JSON
// lines, appended; see history.h).
//
//   chaos-client now                         prints "MONOTONIC_US UNIX_US"
//   chaos-client workload --nodes N --base-port P --clients C --duration S --seed X --out FILE
//   chaos-client setup    --nodes N --base-port P --out FILE [--timeout S]
//   chaos-client probe    --nodes N --base-port P --out FILE [--timeout S] [--after TEXT] [--node K]
//   chaos-client final    --nodes N --base-port P --out FILE [--timeout S]
//
// Every call has a statement_timeout on the server and a deadline here (a
// paused server cannot enforce its own timeout): past it the connection is
// dropped and the call recorded as indeterminate.  Outcomes: ok; fail when
// the call was certainly not applied (57P03: not proposed; 22xxx/42xxx:
// refused input; 55000 "session expired" for the coordination calls); info
// for everything else (timeouts, 40003, a lost connection, ...).
#include <poll.h>
#include <unistd.h>
#include <fcntl.h>

#include <atomic>
#include <cerrno>
#include <memory>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <libpq-fe.h>

#include "json.h"

using chaos::json_quoted;

namespace {

int64_t mono_us()
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t wall_us()
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void sleep_ms(int64_t ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

struct Settings {
    int nodes = 3;
    int base_port = 5581;
    int clients = 10;
    double duration = 60;
    uint64_t seed = 1;
    std::string out;
    double timeout = 10;
    std::string after;
    int node = 0;
    int statement_timeout_ms = 5000;
    int permits = 2;
};

// The history file: one write(2) per line, O_APPEND, so lines from this
// process and the run script never interleave.
class Recorder {
public:
    explicit Recorder(const std::string &path)
    {
        fd_ = open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT, 0644);
        if (fd_ < 0) {
            perror(path.c_str());
            exit(2);
        }
    }
    ~Recorder() { close(fd_); }
    void line(const std::string &s)
    {
        std::string l = s + "\n";
        std::lock_guard<std::mutex> g(mu_);
        const char *p = l.data();
        size_t n = l.size();
        while (n > 0) {
            ssize_t w = write(fd_, p, n);
            if (w < 0)
                return;
            p += w;
            n -= (size_t)w;
        }
    }

private:
    int fd_;
    std::mutex mu_;
};

enum class Out { Ok, Fail, Info };

struct Result {
    Out out = Out::Info;
    std::string sqlstate, error;
    std::vector<std::vector<std::string>> rows; // text values
    std::vector<std::vector<bool>> nulls;
    bool connection_lost = false;
    bool null_at(size_t r, size_t c) const { return r >= rows.size() || c >= rows[r].size() || nulls[r][c]; }
    std::string at(size_t r, size_t c) const { return null_at(r, c) ? "" : rows[r][c]; }
};

struct Conn {
    PGconn *pg = nullptr;
    int node = 0;
    int serial = 0; // counts connections made by this client
    ~Conn() { drop(); }
    void drop()
    {
        if (pg)
            PQfinish(pg);
        pg = nullptr;
    }
    bool ok() const { return pg && PQstatus(pg) == CONNECTION_OK; }
};

bool connect_to(Conn &c, const Settings &s, int node, const std::string &app, int stmt_timeout_ms)
{
    c.drop();
    c.node = node;
    c.serial++;
    std::string port = std::to_string(s.base_port + node - 1);
    std::string opts = "-c statement_timeout=" + std::to_string(stmt_timeout_ms);
    const char *keys[] = {"host", "port", "dbname", "user", "connect_timeout", "options", "application_name", nullptr};
    const char *vals[] = {"127.0.0.1", port.c_str(), "postgres", "postgres", "3", opts.c_str(), app.c_str(), nullptr};
    c.pg = PQconnectdbParams(keys, vals, 0);
    if (!c.ok()) {
        c.drop();
        return false;
    }
    return true;
}

bool definite_failure(const std::string &st, bool coordination)
{
    if (st == "57P03")
        return true; /* not proposed: no leader / worker not running */
    if (st.size() == 5 && (st.compare(0, 2, "22") == 0 || st.compare(0, 2, "42") == 0))
        return true; /* input refused before anything was proposed */
    if (st == "23505")
        return true;
    if (st == "55000" && coordination)
        return true; /* session expired: refused */
    return false;
}

// Runs one statement with a deadline of its own; on any trouble the
// connection is dropped (the caller reconnects elsewhere).
Result run(Conn &c, const std::string &sql, const std::vector<std::string> &params, int64_t deadline_ms,
           bool coordination)
{
    Result r;
    if (!c.ok()) {
        r.out = Out::Fail;
        r.error = "not connected";
        return r;
    }
    std::vector<const char *> p;
    for (auto &x : params)
        p.push_back(x.c_str());
    if (!PQsendQueryParams(c.pg, sql.c_str(), (int)p.size(), nullptr, p.empty() ? nullptr : p.data(), nullptr, nullptr, 0)) {
        r.out = Out::Fail; /* nothing was sent */
        r.error = PQerrorMessage(c.pg);
        r.connection_lost = true;
        c.drop();
        return r;
    }
    int64_t end = mono_us() + deadline_ms * 1000;
    PGresult *last_error = nullptr;
    bool got_ok = false;
    while (true) {
        while (PQisBusy(c.pg)) {
            int64_t left = (end - mono_us()) / 1000;
            if (left <= 0) {
                r.out = Out::Info;
                r.error = "client-side deadline passed";
                r.sqlstate = "";
                if (last_error)
                    PQclear(last_error);
                c.drop();
                return r;
            }
            struct pollfd pfd;
            pfd.fd = PQsocket(c.pg);
            pfd.events = POLLIN;
            pfd.revents = 0;
            int pr = poll(&pfd, 1, (int)std::min<int64_t>(left, 200));
            if (pr < 0 && errno != EINTR)
                break;
            if (!PQconsumeInput(c.pg))
                break;
        }
        PGresult *res = PQgetResult(c.pg);
        if (!res)
            break;
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
            got_ok = true;
            int nr = PQntuples(res), nc = PQnfields(res);
            for (int i = 0; i < nr; i++) {
                std::vector<std::string> row;
                std::vector<bool> nl;
                for (int j = 0; j < nc; j++) {
                    nl.push_back(PQgetisnull(res, i, j) != 0);
                    row.push_back(PQgetisnull(res, i, j) ? "" : PQgetvalue(res, i, j));
                }
                r.rows.push_back(row);
                r.nulls.push_back(nl);
            }
            PQclear(res);
        } else {
            if (last_error)
                PQclear(last_error);
            last_error = res;
        }
    }
    if (last_error) {
        const char *ss = PQresultErrorField(last_error, PG_DIAG_SQLSTATE);
        const char *msg = PQresultErrorField(last_error, PG_DIAG_MESSAGE_PRIMARY);
        r.sqlstate = ss ? ss : "";
        r.error = msg ? msg : PQerrorMessage(c.pg);
        PQclear(last_error);
        r.out = definite_failure(r.sqlstate, coordination) ? Out::Fail : Out::Info;
        if (PQstatus(c.pg) != CONNECTION_OK) {
            r.connection_lost = true;
            if (r.sqlstate.empty() || r.sqlstate.compare(0, 2, "08") == 0 || r.sqlstate == "57P01")
                r.out = Out::Info;
        }
        return r;
    }
    if (!got_ok || PQstatus(c.pg) != CONNECTION_OK) {
        r.out = Out::Info;
        r.error = PQerrorMessage(c.pg);
        r.connection_lost = true;
        c.drop();
        return r;
    }
    r.out = Out::Ok;
    return r;
}

const char *out_name(Out o) { return o == Out::Ok ? "ok" : o == Out::Fail ? "fail" : "info"; }

// One history record under construction.
struct Rec {
    std::string fields; // ,"key":value pairs for the arguments
    void str(const char *k, const std::string &v) { fields += std::string(",\"") + k + "\":" + json_quoted(v); }
    void num(const char *k, int64_t v) { fields += std::string(",\"") + k + "\":" + std::to_string(v); }
};

std::string record(int client, const Conn &c, const std::string &f, const std::string &key, const Rec &args,
                   int64_t invoke, int64_t complete, const Result &r, const std::string &result_json, bool final)
{
    std::string s = "{\"type\":\"op\",\"client\":" + std::to_string(client) + ",\"node\":" + std::to_string(c.node) +
                    ",\"conn\":" + std::to_string(c.serial) + ",\"f\":" + json_quoted(f) + ",\"key\":" + json_quoted(key) +
                    args.fields + ",\"invoke\":" + std::to_string(invoke) + ",\"complete\":" + std::to_string(complete) +
                    ",\"outcome\":\"" + out_name(r.out) + "\",\"result\":" + (r.out == Out::Ok ? result_json : "null");
    if (!r.sqlstate.empty())
        s += ",\"sqlstate\":" + json_quoted(r.sqlstate);
    if (r.out != Out::Ok && !r.error.empty()) {
        std::string e = r.error;
        while (!e.empty() && (e.back() == '\n' || e.back() == ' '))
            e.pop_back();
        s += ",\"error\":" + json_quoted(e.substr(0, 200));
    }
    if (final)
        s += ",\"final\":true";
    return s + "}";
}

std::string json_text_or_null(const Result &r, size_t c = 0)
{
    return r.null_at(0, c) ? "null" : json_quoted(r.at(0, c));
}
std::string json_int_or_null(const Result &r, size_t c = 0)
{
    if (r.null_at(0, c))
        return "null";
    return std::to_string(strtoll(r.at(0, c).c_str(), nullptr, 10));
}
std::string json_bool_or_null(const Result &r, size_t c = 0)
{
    if (r.null_at(0, c))
        return "null";
    return r.at(0, c) == "t" ? "true" : "false";
}
std::string json_entry(const Result &r)
{
    if (r.null_at(0, 1))
        return "null";
    return "{\"value\":" + json_text_or_null(r, 0) + ",\"version\":" + json_int_or_null(r, 1) + "}";
}
std::string json_term(const Result &r)
{
    return "{\"term\":" + json_int_or_null(r, 0) + ",\"leader\":" + json_text_or_null(r, 1) + "}";
}

// ------------------------------------------------------------------ workload
const int kMapKeys = 8;
const char *kCounters[] = {"ci0", "ci1", "cc0"}; // ci*: increments only; cc0: also compare-and-set
const char *kLocks[] = {"l0", "l1"};

struct Worker {
    const Settings &s;
    Recorder &rec;
    int id;
    std::mt19937_64 rng;
    Conn conn;
    int64_t deadline_us;
    long seq = 0;
    std::vector<int64_t> known_version = std::vector<int64_t>(kMapKeys, 0);
    int64_t known_cc = 0;
    std::string candidate; // entered in e0 by this session
    long ops = 0;

    Worker(const Settings &st, Recorder &r, int i, int64_t deadline)
        : s(st), rec(r), id(i), rng(st.seed * 1000003ULL + (uint64_t)i), deadline_us(deadline)
    {
    }

    int64_t between(int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); }
    bool chance(double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; }

    void reconnect()
    {
        candidate.clear();
        int tries = 0;
        int node = conn.node;
        while (mono_us() < deadline_us + 2000000 && tries < 200) {
            int next = s.nodes == 1 ? 1 : node;
            if (s.nodes > 1)
                while (next == node)
                    next = (int)between(1, s.nodes);
            node = next;
            if (connect_to(conn, s, node, "chaos-c" + std::to_string(id), s.statement_timeout_ms))
                return;
            tries++;
            sleep_ms(100);
        }
    }

    // Runs and records one call.
    Result call(const std::string &f, const std::string &key, const Rec &args, const std::string &sql,
                const std::vector<std::string> &params, bool coordination,
                std::string (*to_json)(const Result &), int64_t deadline_ms = 0)
    {
        if (!conn.ok())
            reconnect();
        if (deadline_ms == 0)
            deadline_ms = s.statement_timeout_ms + 2000;
        int64_t t0 = mono_us();
        Result r = run(conn, sql, params, deadline_ms, coordination);
        int64_t t1 = mono_us();
        rec.line(record(id, conn, f, key, args, t0, t1, r, r.out == Out::Ok ? to_json(r) : "null", false));
        ops++;
        if (r.out != Out::Ok) {
            conn.drop(); /* on any error: reconnect to another node */
        }
        return r;
    }

    static std::string j_text(const Result &r) { return json_text_or_null(r); }
    static std::string j_int(const Result &r) { return json_int_or_null(r); }
    static std::string j_bool(const Result &r) { return json_bool_or_null(r); }
    static std::string j_entry(const Result &r) { return json_entry(r); }
    static std::string j_term(const Result &r) { return json_term(r); }

    void map_op()
    {
        int k = (int)between(0, kMapKeys - 1);
        std::string key = "k" + std::to_string(k);
        double p = std::uniform_real_distribution<double>(0, 1)(rng);
        Rec a;
        if (p < 0.2) {
            call("map_get", key, a, "SELECT atomix.map_get('chaos', $1)", {key}, false, j_text);
        } else if (p < 0.4) {
            Result r = call("map_get_entry", key, a, "SELECT value, version FROM atomix.map_get_entry('chaos', $1)", {key},
                            false, j_entry);
            if (r.out == Out::Ok && !r.null_at(0, 1))
                known_version[(size_t)k] = strtoll(r.at(0, 1).c_str(), nullptr, 10);
        } else if (p < 0.65) {
            std::string v = "c" + std::to_string(id) + "-" + std::to_string(seq++);
            a.str("value", v);
            Result r = call("map_put", key, a, "SELECT atomix.map_put('chaos', $1, $2)", {key, v}, false, j_int);
            if (r.out == Out::Ok && !r.null_at(0, 0))
                known_version[(size_t)k] = strtoll(r.at(0, 0).c_str(), nullptr, 10);
        } else if (p < 0.85) {
            std::string v = "c" + std::to_string(id) + "-" + std::to_string(seq++);
            int64_t ifv = known_version[(size_t)k] > 0 ? known_version[(size_t)k] : 65536;
            a.str("value", v);
            a.num("if_version", ifv);
            Result r = call("map_cas", key, a, "SELECT atomix.map_put('chaos', $1, $2, if_version => $3)",
                            {key, v, std::to_string(ifv)}, false, j_int);
            if (r.out == Out::Ok && !r.null_at(0, 0))
                known_version[(size_t)k] = strtoll(r.at(0, 0).c_str(), nullptr, 10);
        } else if (chance(0.5)) {
            call("map_remove", key, a, "SELECT atomix.map_remove('chaos', $1)", {key}, false, j_bool);
        } else {
            int64_t ifv = known_version[(size_t)k] > 0 ? known_version[(size_t)k] : 65536;
            a.num("if_version", ifv);
            call("map_remove", key, a, "SELECT atomix.map_remove('chaos', $1, if_version => $2)", {key, std::to_string(ifv)},
                 false, j_bool);
        }
    }

    void counter_op()
    {
        std::string name = kCounters[between(0, 2)];
        double p = std::uniform_real_distribution<double>(0, 1)(rng);
        Rec a;
        if (name == "cc0" && p < 0.35) {
            int64_t e = known_cc, n = known_cc + 1;
            a.num("expected", e);
            a.num("new", n);
            Result r = call("counter_cas", name, a, "SELECT atomix.counter_cas($1, $2, $3)",
                            {name, std::to_string(e), std::to_string(n)}, false, j_bool);
            if (r.out == Out::Ok && r.at(0, 0) == "t")
                known_cc = n;
        } else if (p < 0.7) {
            a.num("delta", 1);
            Result r = call("counter_incr", name, a, "SELECT atomix.counter_incr($1, 1)", {name}, false, j_int);
            if (name == "cc0" && r.out == Out::Ok)
                known_cc = strtoll(r.at(0, 0).c_str(), nullptr, 10);
        } else {
            Result r = call("counter_get", name, a, "SELECT atomix.counter_get($1)", {name}, false, j_int);
            if (name == "cc0" && r.out == Out::Ok)
                known_cc = strtoll(r.at(0, 0).c_str(), nullptr, 10);
        }
    }

    void lock_op()
    {
        std::string name = kLocks[between(0, 1)];
        Rec a;
        Result r = call("lock_acquire", name, a, "SELECT atomix.lock_acquire($1, timeout => '1 s')", {name}, true, j_int);
        if (r.out != Out::Ok || r.null_at(0, 0))
            return;
        sleep_ms(between(5, 40));
        call("lock_release", name, a, "SELECT atomix.lock_release($1)", {name}, true, j_bool);
    }

    void semaphore_op()
    {
        Rec a;
        a.num("permits", 1);
        if (chance(0.05)) {
            Rec c;
            c.num("permits", s.permits);
            call("sem_create", "s0", c, "SELECT atomix.semaphore_create('s0', $1)", {std::to_string(s.permits)}, true, j_bool);
            return;
        }
        Result r = call("sem_acquire", "s0", a, "SELECT atomix.semaphore_acquire('s0', 1, timeout => '1 s')", {}, true, j_bool);
        if (r.out != Out::Ok || r.at(0, 0) != "t")
            return;
        sleep_ms(between(5, 40));
        call("sem_release", "s0", a, "SELECT atomix.semaphore_release('s0', 1)", {}, true, j_bool);
    }

    void election_op()
    {
        Rec a;
        const char *cols = "SELECT term, leader FROM ";
        if (!conn.ok()) {
            reconnect(); /* the candidate id names this connection's session */
            candidate.clear();
        }
        if (candidate.empty() && chance(0.6)) {
            std::string cand = "c" + std::to_string(id) + "." + std::to_string(conn.serial);
            a.str("candidate", cand);
            Result r = call("election_enter", "e0", a, std::string(cols) + "atomix.election_enter('e0', $1)", {cand}, true,
                            j_term);
            if (r.out == Out::Ok)
                candidate = cand;
        } else if (!candidate.empty() && chance(0.4)) {
            a.str("candidate", candidate);
            Result r = call("election_withdraw", "e0", a, std::string(cols) + "atomix.election_withdraw('e0', $1)",
                            {candidate}, true, j_term);
            if (r.out == Out::Ok)
                candidate.clear();
        } else {
            call("election_get", "e0", a, std::string(cols) + "atomix.election_get('e0')", {}, true, j_term);
        }
    }

    void loop()
    {
        conn.node = 1 + id % s.nodes;
        if (!connect_to(conn, s, conn.node, "chaos-c" + std::to_string(id), s.statement_timeout_ms))
            reconnect();
        while (mono_us() < deadline_us) {
            int serial = conn.serial;
            double p = std::uniform_real_distribution<double>(0, 1)(rng);
            if (p < 0.50)
                map_op();
            else if (p < 0.70)
                counter_op();
            else if (p < 0.82)
                lock_op();
            else if (p < 0.90)
                semaphore_op();
            else
                election_op();
            if (conn.serial != serial || !conn.ok())
                candidate.clear(); /* a new connection is a new session */
        }
        conn.drop();
    }
};

// ------------------------------------------------------------------ helpers
// Retries one call on every node in turn until it succeeds or time is up;
// records every attempt.
Result until_ok(const Settings &s, Recorder &rec, int client, const std::string &f, const std::string &key, const Rec &args,
                const std::string &sql, const std::vector<std::string> &params, bool coordination,
                std::string (*to_json)(const Result &), int64_t until_us, bool final, int start_node = 1)
{
    Conn c;
    int node = start_node;
    Result r;
    r.out = Out::Info;
    r.error = "no attempt";
    for (bool first = true; first || mono_us() < until_us; first = false) { /* at least one attempt */
        if (!c.ok() && !connect_to(c, s, node, "chaos-helper", 5000)) {
            node = node % s.nodes + 1;
            sleep_ms(200);
            continue;
        }
        int64_t t0 = mono_us();
        r = run(c, sql, params, 7000, coordination);
        int64_t t1 = mono_us();
        rec.line(record(client, c, f, key, args, t0, t1, r, r.out == Out::Ok ? to_json(r) : "null", final));
        if (r.out == Out::Ok)
            return r;
        c.drop();
        node = node % s.nodes + 1;
        sleep_ms(300);
    }
    return r;
}

int cmd_setup(const Settings &s)
{
    Recorder rec(s.out);
    int64_t until = mono_us() + (int64_t)(s.timeout * 1e6);
    Rec a;
    a.num("permits", s.permits);
    Result r = until_ok(s, rec, 999, "sem_create", "s0", a, "SELECT atomix.semaphore_create('s0', $1)",
                        {std::to_string(s.permits)}, true, Worker::j_bool, until, false);
    if (r.out != Out::Ok) {
        fprintf(stderr, "chaos-client setup: semaphore_create failed: %s %s\n", r.sqlstate.c_str(), r.error.c_str());
        return 1;
    }
    return 0;
}

// After a heal: every node must take a write within the timeout.
int cmd_probe(const Settings &s)
{
    Recorder rec(s.out);
    std::atomic<int> failed{0};
    std::vector<std::thread> ts;
    for (int n = 1; n <= s.nodes; n++) {
        if (s.node && n != s.node)
            continue;
        ts.emplace_back([&, n]() {
            int64_t t0 = mono_us(), until = t0 + (int64_t)(s.timeout * 1e6);
            int tries = 0;
            bool ok = false;
            std::string last;
            while (!ok && mono_us() < until) {
                tries++;
                Conn c;
                int left_ms = (int)std::max<int64_t>(500, (until - mono_us()) / 1000);
                if (!connect_to(c, s, n, "chaos-probe", std::min(left_ms, 5000))) {
                    last = "connect failed";
                    sleep_ms(200);
                    continue;
                }
                Result r = run(c, "SELECT atomix.map_put('chaos-probe', $1, $2)", {"n" + std::to_string(n), s.after},
                               std::min(left_ms, 5000) + 500, false);
                ok = r.out == Out::Ok;
                if (!ok) {
                    last = r.sqlstate + " " + r.error;
                    sleep_ms(200);
                }
            }
            int64_t t1 = mono_us();
            std::string l = "{\"type\":\"probe\",\"node\":" + std::to_string(n) + ",\"invoke\":" + std::to_string(t0) +
                            ",\"complete\":" + std::to_string(t1) + ",\"ok\":" + (ok ? "true" : "false") +
                            ",\"tries\":" + std::to_string(tries) + ",\"after\":" + json_quoted(s.after);
            if (!ok)
                l += ",\"error\":" + json_quoted(last.substr(0, 200));
            rec.line(l + "}");
            if (!ok)
                failed++;
        });
    }
    for (auto &t : ts)
        t.join();
    return failed ? 1 : 0;
}

// After the whole-cluster crash and restart: read everything back.
int cmd_final(const Settings &s)
{
    Recorder rec(s.out);
    int64_t until = mono_us() + (int64_t)(s.timeout * 1e6);
    /* one stuck item must not starve the others: each gets 12 s at most */
    auto slice = [&]() { return std::min(until, mono_us() + 12000000); };
    int bad = 0;
    const int fc = 1000;
    Rec a;
    for (int k = 0; k < kMapKeys; k++) {
        std::string key = "k" + std::to_string(k);
        Result r = until_ok(s, rec, fc, "map_get_entry", key, a, "SELECT value, version FROM atomix.map_get_entry('chaos', $1)",
                            {key}, false, Worker::j_entry, slice(), true, 1 + k % s.nodes);
        bad += r.out != Out::Ok;
    }
    for (const char *name : kCounters) {
        Result r = until_ok(s, rec, fc, "counter_get", name, a, "SELECT atomix.counter_get($1)", {name}, false, Worker::j_int,
                            slice(), true);
        bad += r.out != Out::Ok;
    }
    for (const char *name : kLocks) {
        /* granted at all, with a token above every earlier one */
        /* (the helper's connection closes right after, which releases it) */
        Result r = until_ok(s, rec, fc, "lock_acquire", name, a, "SELECT atomix.lock_acquire($1, timeout => '5 s')", {name},
                            true, Worker::j_int, slice(), true);
        if (r.out != Out::Ok || r.null_at(0, 0))
            bad++;
    }
    /* the permits come back once every holder's session is gone */
    {
        Result r;
        int64_t sem_until = std::min(until, mono_us() + 20000000);
        while (true) {
            r = until_ok(s, rec, fc, "sem_available", "s0", a, "SELECT atomix.semaphore_available('s0')", {}, true,
                         Worker::j_int, slice(), true);
            if (r.out != Out::Ok || r.at(0, 0) == std::to_string(s.permits) || mono_us() > sem_until)
                break;
            sleep_ms(1000);
        }
        bad += r.out != Out::Ok;
    }
    Result r = until_ok(s, rec, fc, "election_get", "e0", a, "SELECT term, leader FROM atomix.election_get('e0')", {}, true,
                        Worker::j_term, slice(), true);
    bad += r.out != Out::Ok;
    if (bad)
        fprintf(stderr, "chaos-client final: %d final reads failed\n", bad);
    return bad ? 1 : 0;
}

int cmd_workload(const Settings &s)
{
    Recorder rec(s.out);
    int64_t deadline = mono_us() + (int64_t)(s.duration * 1e6);
    std::vector<std::unique_ptr<Worker>> ws;
    std::vector<std::thread> ts;
    for (int i = 0; i < s.clients; i++)
        ws.emplace_back(new Worker(s, rec, i, deadline));
    for (int i = 0; i < s.clients; i++)
        ts.emplace_back([&ws, i]() { ws[(size_t)i]->loop(); });
    for (auto &t : ts)
        t.join();
    long total = 0;
    for (auto &w : ws)
        total += w->ops;
    fprintf(stderr, "chaos-client: %ld operations by %d clients\n", total, s.clients);
    return 0;
}

void usage()
{
    fprintf(stderr, "usage: chaos-client now | workload|setup|probe|final --nodes N --base-port P --out FILE\n"
                    "         [--clients C] [--duration S] [--seed X] [--timeout S] [--after TEXT] [--node K] [--permits N]\n");
    exit(2);
}

} // namespace

int main(int argc, char **argv)
{
    if (argc < 2)
        usage();
    std::string cmd = argv[1];
    if (cmd == "now") {
        printf("%lld %lld\n", (long long)mono_us(), (long long)wall_us());
        return 0;
    }
    Settings s;
    for (int i = 2; i < argc; i++) {
        std::string a = argv[i];
        if (i + 1 >= argc)
            usage();
        const char *v = argv[++i];
        if (a == "--nodes")
            s.nodes = atoi(v);
        else if (a == "--base-port")
            s.base_port = atoi(v);
        else if (a == "--clients")
            s.clients = atoi(v);
        else if (a == "--duration")
            s.duration = atof(v);
        else if (a == "--seed")
            s.seed = strtoull(v, nullptr, 10);
        else if (a == "--out")
            s.out = v;
        else if (a == "--timeout")
            s.timeout = atof(v);
        else if (a == "--after")
            s.after = v;
        else if (a == "--node")
            s.node = atoi(v);
        else if (a == "--permits")
            s.permits = atoi(v);
        else
            usage();
    }
    if (s.out.empty() || s.nodes < 1)
        usage();
    if (cmd == "workload")
        return cmd_workload(s);
    if (cmd == "setup")
        return cmd_setup(s);
    if (cmd == "probe")
        return cmd_probe(s);
    if (cmd == "final")
        return cmd_final(s);
    usage();
}
