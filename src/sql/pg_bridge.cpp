/*
 * pg_bridge.cpp — converting between Postgres errors and C++ exceptions
 * (the rules are in pg_bridge.h).
 */
#include "pg_bridge.h"

extern "C" {
#include "utils/memutils.h"
}

namespace atomix {

const char *PgError::what() const noexcept
{
    return edata_ && edata_->message ? edata_->message : "postgres error";
}

void pg_guard_impl(void (*fn)(void *), void *arg)
{
    MemoryContext oldcxt = CurrentMemoryContext;
    ErrorData *edata = NULL;

    PG_TRY();
    {
        fn(arg);
    }
    PG_CATCH();
    {
        MemoryContextSwitchTo(oldcxt);
        edata = CopyErrorData();
        FlushErrorState();
    }
    PG_END_TRY();

    if (edata)
        throw PgError(edata);
}

/* What a caught C++ exception becomes once the C++ frames are gone.  Plain
 * C storage: nothing here needs a destructor when ereport longjmps. */
struct PendingError {
    ErrorData *edata;
    int sqlstate;
    char *message;
    char *hint;
    char *detail;
};

static char *copy_or_null(const std::string &s)
{
    return s.empty() ? NULL : pstrdup(s.c_str());
}

/* Runs body, filling `pending` from whatever it throws.  Kept separate so no
 * C++ object is alive in the frame that raises the Postgres error. */
static void capture(void (*body)(void *), void *arg, PendingError *pending) noexcept
{
    MemoryContext oldcxt = CurrentMemoryContext;
    try {
        body(arg);
    } catch (const PgError &e) {
        pending->edata = e.edata();
    } catch (const AtomixError &e) {
        MemoryContextSwitchTo(oldcxt);
        pending->sqlstate = e.sqlstate();
        pending->message = pstrdup(e.what());
        pending->hint = copy_or_null(e.hint());
        pending->detail = copy_or_null(e.detail());
    } catch (const std::bad_alloc &) {
        pending->sqlstate = ERRCODE_OUT_OF_MEMORY;
        pending->message = pstrdup("out of memory in atomix");
    } catch (const std::exception &e) {
        MemoryContextSwitchTo(oldcxt);
        pending->sqlstate = ERRCODE_INTERNAL_ERROR;
        pending->message = psprintf("atomix internal error: %s", e.what());
    } catch (...) {
        pending->sqlstate = ERRCODE_INTERNAL_ERROR;
        pending->message = pstrdup("atomix internal error: unknown exception");
    }
}

static void raise_pending(const PendingError &pending, int elevel, const char *context)
{
    if (pending.edata) {
        if (elevel >= ERROR)
            ReThrowError(pending.edata);
        pending.edata->elevel = elevel;
        ThrowErrorData(pending.edata);
        return;
    }
    ereport(elevel, (errcode(pending.sqlstate), errmsg_internal("%s", pending.message),
                     pending.hint ? errhint("%s", pending.hint) : 0,
                     pending.detail ? errdetail_internal("%s", pending.detail) : 0,
                     context ? errcontext("%s", context) : 0));
}

struct CallArgs {
    Datum (*impl)(FunctionCallInfo);
    FunctionCallInfo fcinfo;
    Datum result;
};

Datum atomix_call(Datum (*impl)(FunctionCallInfo), FunctionCallInfo fcinfo)
{
    CallArgs args = {impl, fcinfo, (Datum)0};
    PendingError pending = {NULL, 0, NULL, NULL, NULL};
    capture(
        [](void *p) {
            CallArgs *a = static_cast<CallArgs *>(p);
            a->result = a->impl(a->fcinfo);
        },
        &args, &pending);
    if (pending.edata || pending.message)
        raise_pending(pending, ERROR, NULL);
    return args.result;
}

bool run_guarded(void (*body)(void *), void *arg, int elevel, const char *context)
{
    PendingError pending = {NULL, 0, NULL, NULL, NULL};
    capture(body, arg, &pending);
    if (!pending.edata && !pending.message)
        return true;
    raise_pending(pending, elevel, context);
    return false;
}

} // namespace atomix
