/*
 * pg_bridge.h — the one place where C++ exceptions and Postgres errors meet.
 *
 * Postgres reports errors with longjmp, which skips C++ destructors.  So:
 *   - every entry point Postgres calls (SQL function, worker main, callback)
 *     runs its C++ body through atomix_call()/run_guarded(), which catches
 *     everything and raises the Postgres error only after the C++ catch
 *     block has closed;
 *   - every Postgres call that can ereport from inside C++ goes through
 *     pg_guard(), which turns the error into a PgError exception, restoring
 *     the memory context and clearing the error stack;
 *   - atomix's own errors are thrown as AtomixError (SQLSTATE, message, hint).
 * The lambda given to pg_guard must not own C++ objects with destructors:
 * a longjmp leaves it, not its caller.
 */
#ifndef ATOMIX_PG_BRIDGE_H
#define ATOMIX_PG_BRIDGE_H

extern "C" {
#include "postgres.h"
#include "fmgr.h"
#include "utils/elog.h"
}

#include <exception>
#include <string>

namespace atomix {

/* A Postgres error caught by pg_guard; edata lives in the caller's context. */
class PgError : public std::exception {
  public:
    explicit PgError(ErrorData *edata) : edata_(edata) {}
    const char *what() const noexcept override;
    ErrorData *edata() const { return edata_; }

  private:
    ErrorData *edata_;
};

/* An error atomix raises itself. */
class AtomixError : public std::exception {
  public:
    AtomixError(int sqlstate, std::string message, std::string hint = std::string(),
                std::string detail = std::string())
        : sqlstate_(sqlstate), message_(std::move(message)), hint_(std::move(hint)),
          detail_(std::move(detail))
    {
    }
    const char *what() const noexcept override { return message_.c_str(); }
    int sqlstate() const { return sqlstate_; }
    const std::string &hint() const { return hint_; }
    const std::string &detail() const { return detail_; }

  private:
    int sqlstate_;
    std::string message_;
    std::string hint_;
    std::string detail_;
};

/* Runs f (a lambda calling Postgres) and converts a Postgres error into
 * PgError.  Out-of-line helper keeps the PG_TRY frame out of callers. */
void pg_guard_impl(void (*fn)(void *), void *arg);

template <typename F> inline void pg_guard(F &&f)
{
    pg_guard_impl([](void *p) { (*static_cast<F *>(p))(); }, static_cast<void *>(&f));
}

/* The C-side boundary for SQL functions: runs impl, and reports whatever it
 * threw as a Postgres ERROR once no C++ frame is left to unwind. */
Datum atomix_call(Datum (*impl)(FunctionCallInfo), FunctionCallInfo fcinfo);

/* The same boundary for code that returns nothing (worker main, callbacks
 * that must report rather than raise).  Returns false when body threw;
 * the error has then been logged at `elevel` (LOG or lower never longjmps). */
bool run_guarded(void (*body)(void *), void *arg, int elevel, const char *context);

} // namespace atomix

/* Declares a SQL-callable function `name` whose C++ body is name##_impl. */
#define ATOMIX_SQL_FUNCTION(name)                                                   \
    static Datum name##_impl(FunctionCallInfo fcinfo);                              \
    extern "C" {                                                                    \
    PG_FUNCTION_INFO_V1(name);                                                      \
    Datum name(PG_FUNCTION_ARGS) { return atomix::atomix_call(name##_impl, fcinfo); } \
    }                                                                               \
    static Datum name##_impl(FunctionCallInfo fcinfo)

#endif
