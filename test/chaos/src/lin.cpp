// lin.cpp — the linearizability search (see lin.h).
//
// The history is a doubly linked list of call and return entries in time
// order.  The search repeatedly picks a call that comes before the first
// return still in the list (an op that may go next), applies it to the
// model, and removes its call and return from the list; when it meets a
// return entry it cannot get past, it backtracks.  Each (set of linearized
// ops, model state) is explored at most once: the set is kept as a 128-bit
// Zobrist hash (two independent 64-bit hashes; a collision could only hide
// a path, i.e. err towards reporting a violation, never towards a pass).
//
// Indeterminate ops with the same effect (say, forty unanswered increments
// by 1 of one counter) are interchangeable once invoked: only the earliest
// invoked of such a group that is not yet linearized is ever tried, so the
// search counts how many of them took effect instead of trying subsets.
//
// For registers at most one indeterminate op is put between two
// determinate ones (see the loop for why that loses nothing).
//
// Candidates are tried in three rounds: determinate ops, then indeterminate
// ops whose effect was observed somewhere, then the other indeterminate ops
// — an indeterminate op is only put in when nothing determinate can go next.
#include "lin.h"

#include <algorithm>
#include <map>
#include <tuple>
#include <unordered_set>

namespace chaos {

bool lin_step(bool counter, const LState &s, const LOp &op, LState &out)
{
    out = s;
    if (counter) {
        switch (op.kind) {
        case LKind::CounterIncr:
            if (op.info) {
                out.a = s.a + op.a;
                return true;
            }
            if (s.a + op.a != op.res)
                return false;
            out.a = op.res;
            return true;
        case LKind::CounterCas:
            if (op.info) {
                if (s.a != op.a)
                    return false; /* would change nothing: same as not happening */
                out.a = op.b;
                return true;
            }
            if (op.res == 1) {
                if (s.a != op.a)
                    return false;
                out.a = op.b;
                return true;
            }
            return s.a != op.a;
        case LKind::CounterGet: return s.a == op.res;
        default: return false;
        }
    }
    bool present = s.a >= 0;
    switch (op.kind) {
    case LKind::MapGet: return s.a == op.res;
    case LKind::MapGetEntry:
        if (op.res < 0)
            return !present;
        return s.a == op.res && s.b == op.res2;
    case LKind::MapPut:
        if (!op.info && op.res >= 0 && s.b > 0 && op.res <= s.b)
            return false; /* versions of a key only grow */
        out.a = op.a;
        out.b = op.res; /* -1: not known */
        return true;
    case LKind::MapCas: {
        bool match = present && s.b > 0 && s.b == op.b;
        if (op.info) {
            if (!match)
                return false;
            out.a = op.a;
            out.b = op.res;
            return true;
        }
        if (op.res == -2)
            return !match;
        if (!match)
            return false;
        if (op.res >= 0 && op.res <= s.b)
            return false;
        out.a = op.a;
        out.b = op.res;
        return true;
    }
    case LKind::MapRemove: {
        bool match = present && (op.b < 0 || (s.b > 0 && s.b == op.b));
        if (op.info || op.res == 1) {
            if (!match)
                return false;
            out.a = -1; /* keep the version: later ones are larger */
            return true;
        }
        return !match;
    }
    default: return false;
    }
}

namespace {

struct Entry {
    long op = -1;
    bool call = false;
    int64_t time = 0;
    Entry *prev = nullptr, *next = nullptr, *match = nullptr;
};

struct CacheKey {
    uint64_t h1, h2;
    int64_t a, b;
    bool operator==(const CacheKey &o) const { return h1 == o.h1 && h2 == o.h2 && a == o.a && b == o.b; }
};

struct CacheHash {
    size_t operator()(const CacheKey &k) const
    {
        uint64_t x = k.h1 ^ (k.h2 * 0x9E3779B97F4A7C15ULL) ^ ((uint64_t)k.a * 0xC2B2AE3D27D4EB4FULL) ^
                     ((uint64_t)k.b * 0x165667B19E3779F9ULL);
        x ^= x >> 31;
        return (size_t)x;
    }
};

uint64_t splitmix64(uint64_t &x)
{
    uint64_t z = (x += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

void lift(Entry *e)
{
    e->prev->next = e->next;
    if (e->next)
        e->next->prev = e->prev;
    Entry *m = e->match;
    m->prev->next = m->next;
    if (m->next)
        m->next->prev = m->prev;
}

void unlift(Entry *e)
{
    Entry *m = e->match;
    m->prev->next = m;
    if (m->next)
        m->next->prev = m;
    e->prev->next = e;
    if (e->next)
        e->next->prev = e;
}

int round_of(const LOp &op) { return !op.info ? 0 : op.observed ? 1 : 2; }

} // namespace

LinResult check_linearizable(const std::vector<LOp> &ops, bool counter, uint64_t budget)
{
    LinResult r;
    const size_t n = ops.size();
    std::vector<Entry> entries(2 * n + 1);
    std::vector<Entry *> order;
    order.reserve(2 * n);
    for (size_t i = 0; i < n; i++) {
        Entry *c = &entries[2 * i], *rt = &entries[2 * i + 1];
        c->op = rt->op = (long)i;
        c->call = true;
        c->time = ops[i].invoke;
        rt->time = ops[i].info ? INT64_MAX : std::max(ops[i].complete, ops[i].invoke);
        c->match = rt;
        rt->match = c;
        order.push_back(c);
        order.push_back(rt);
    }
    /* at equal times calls go first: such ops count as concurrent */
    std::stable_sort(order.begin(), order.end(), [](const Entry *x, const Entry *y) {
        if (x->time != y->time)
            return x->time < y->time;
        return x->call && !y->call;
    });
    Entry *head = &entries[2 * n];
    Entry *prev = head;
    for (Entry *e : order) {
        prev->next = e;
        e->prev = prev;
        prev = e;
    }
    prev->next = nullptr;

    std::vector<uint64_t> z1(n), z2(n);
    uint64_t seed = 0x5eed5eedULL;
    for (size_t i = 0; i < n; i++) {
        z1[i] = splitmix64(seed);
        z2[i] = splitmix64(seed);
    }
    size_t required = 0;
    for (const LOp &op : ops)
        if (!op.info)
            required++;

    /* groups of interchangeable indeterminate ops, each in invoke order;
     * the linearized members of a group are always a prefix of it */
    std::vector<int> group(n, -1), group_pos(n, 0);
    std::vector<int> group_next;
    {
        std::map<std::tuple<int, int64_t, int64_t, int64_t>, int> ids;
        std::vector<std::vector<size_t>> members;
        for (size_t i = 0; i < n; i++) {
            if (!ops[i].info)
                continue;
            auto key = std::make_tuple((int)ops[i].kind, ops[i].a, ops[i].b, ops[i].res);
            auto it = ids.find(key);
            if (it == ids.end()) {
                it = ids.emplace(key, (int)members.size()).first;
                members.emplace_back();
            }
            members[(size_t)it->second].push_back(i);
            group[i] = it->second;
        }
        for (auto &m : members) {
            std::stable_sort(m.begin(), m.end(), [&](size_t x, size_t y) { return ops[x].invoke < ops[y].invoke; });
            for (size_t k = 0; k < m.size(); k++)
                group_pos[m[k]] = (int)k;
        }
        group_next.assign(members.size(), 0);
    }

    struct Frame {
        Entry *e;
        LState s;
        int round;
    };
    std::vector<Frame> stack;
    std::unordered_set<CacheKey, CacheHash> cache;
    LState s;
    if (!counter) {
        s.a = -1; /* absent */
        s.b = 0;
    }
    uint64_t h1 = 0, h2 = 0;
    size_t done = 0;
    int round = 0;
    Entry *e = head->next;
    bool have_stuck = false;

    while (done < required) {
        if (e == nullptr || !e->call) {
            /* registers: the state after a run of indeterminate writes is
             * the state after its last one alone (a put or remove overwrites;
             * an indeterminate CAS can only follow a write of known version,
             * never an indeterminate one), so one between determinate ops is
             * enough */
            bool chain_ok = counter || stack.empty() || !ops[(size_t)stack.back().e->op].info;
            if (round < 2 && chain_ok) {
                round++;
                e = head->next;
                continue;
            }
            if (!have_stuck || done > r.deepest) {
                have_stuck = true;
                r.deepest = done;
                r.stuck = e ? e->op : -1;
                r.stuck_state = s;
                r.prefix.clear();
                for (size_t k = stack.size() > 6 ? stack.size() - 6 : 0; k < stack.size(); k++)
                    r.prefix.push_back(stack[k].e->op);
            }
            if (stack.empty()) {
                r.verdict = LinVerdict::Violation;
                return r;
            }
            Frame f = stack.back();
            stack.pop_back();
            const LOp &op = ops[(size_t)f.e->op];
            h1 ^= z1[(size_t)f.e->op];
            h2 ^= z2[(size_t)f.e->op];
            s = f.s;
            if (!op.info)
                done--;
            else
                group_next[(size_t)group[(size_t)f.e->op]]--;
            unlift(f.e);
            round = f.round;
            e = f.e->next;
            continue;
        }
        const LOp &op = ops[(size_t)e->op];
        if (round_of(op) != round || (op.info && group_pos[(size_t)e->op] != group_next[(size_t)group[(size_t)e->op]])) {
            e = e->next;
            continue;
        }
        if (++r.steps > budget) {
            r.verdict = LinVerdict::Budget;
            return r;
        }
        LState ns;
        if (lin_step(counter, s, op, ns)) {
            uint64_t n1 = h1 ^ z1[(size_t)e->op], n2 = h2 ^ z2[(size_t)e->op];
            if (cache.insert(CacheKey{n1, n2, ns.a, ns.b}).second) {
                stack.push_back(Frame{e, s, round});
                s = ns;
                h1 = n1;
                h2 = n2;
                if (!op.info)
                    done++;
                else
                    group_next[(size_t)group[(size_t)e->op]]++;
                lift(e);
                e = head->next;
                round = 0;
                continue;
            }
        }
        e = e->next;
    }
    r.deepest = done;
    return r;
}

} // namespace chaos
