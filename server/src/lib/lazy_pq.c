/* lazy_pq.c - the libpq functions the server (store_pg.c, migrate.c) and
 * its tests call, defined here under their own names and forwarded to libpq
 * loaded by lazy.c (see lazy.h). store_pg_open loads it first, so a missing
 * libpq is reported as a configuration error at start. The free functions
 * take NULL as libpq does, without loading it. */
#include <libpq-fe.h>

#include "lazy_int.h"

#define PQ_FUNCS(X)                                                                             \
    X(PQconnectdb) X(PQconnectdbParams) X(PQconninfoParse) X(PQconninfoFree) X(PQfinish)        \
    X(PQreset) X(PQstatus) X(PQtransactionStatus) X(PQerrorMessage) X(PQsetNoticeProcessor)     \
    X(PQhost) X(PQport) X(PQdb) X(PQuser) X(PQexec) X(PQexecParams) X(PQresultStatus)           \
    X(PQresultErrorField) X(PQclear) X(PQntuples) X(PQnfields) X(PQcmdTuples) X(PQgetvalue)     \
    X(PQgetlength) X(PQgetisnull) X(PQunescapeBytea) X(PQfreemem)

enum { PQ_FUNCS(LAZY_ENUM) PQ_NFUNCS };
static const char *const names[] = {PQ_FUNCS(LAZY_NAME)};
static void *fns[PQ_NFUNCS];
const struct lazy_syms lazy_pq_syms = {names, fns, PQ_NFUNCS};

#define F(name) ((__typeof__(&name))lazy_fn(LAZY_PQ, fns, I_##name))

PGconn *PQconnectdb(const char *conninfo)
{
    return F(PQconnectdb)(conninfo);
}

PGconn *PQconnectdbParams(const char *const *keywords, const char *const *values, int expand_dbname)
{
    return F(PQconnectdbParams)(keywords, values, expand_dbname);
}

PQconninfoOption *PQconninfoParse(const char *conninfo, char **errmsg)
{
    return F(PQconninfoParse)(conninfo, errmsg);
}

void PQconninfoFree(PQconninfoOption *opts)
{
    if (!opts)
        return;
    F(PQconninfoFree)(opts);
}

void PQfinish(PGconn *conn)
{
    if (!conn)
        return;
    F(PQfinish)(conn);
}

void PQreset(PGconn *conn)
{
    F(PQreset)(conn);
}

ConnStatusType PQstatus(const PGconn *conn)
{
    return F(PQstatus)(conn);
}

PGTransactionStatusType PQtransactionStatus(const PGconn *conn)
{
    return F(PQtransactionStatus)(conn);
}

char *PQerrorMessage(const PGconn *conn)
{
    return F(PQerrorMessage)(conn);
}

PQnoticeProcessor PQsetNoticeProcessor(PGconn *conn, PQnoticeProcessor proc, void *arg)
{
    return F(PQsetNoticeProcessor)(conn, proc, arg);
}

char *PQhost(const PGconn *conn)
{
    return F(PQhost)(conn);
}

char *PQport(const PGconn *conn)
{
    return F(PQport)(conn);
}

char *PQdb(const PGconn *conn)
{
    return F(PQdb)(conn);
}

char *PQuser(const PGconn *conn)
{
    return F(PQuser)(conn);
}

PGresult *PQexec(PGconn *conn, const char *query)
{
    return F(PQexec)(conn, query);
}

PGresult *PQexecParams(PGconn *conn, const char *command, int nParams, const Oid *paramTypes,
                       const char *const *paramValues, const int *paramLengths,
                       const int *paramFormats, int resultFormat)
{
    return F(PQexecParams)(conn, command, nParams, paramTypes, paramValues, paramLengths,
                           paramFormats, resultFormat);
}

ExecStatusType PQresultStatus(const PGresult *res)
{
    return F(PQresultStatus)(res);
}

char *PQresultErrorField(const PGresult *res, int fieldcode)
{
    return F(PQresultErrorField)(res, fieldcode);
}

void PQclear(PGresult *res)
{
    if (!res)
        return;
    F(PQclear)(res);
}

int PQntuples(const PGresult *res)
{
    return F(PQntuples)(res);
}

int PQnfields(const PGresult *res)
{
    return F(PQnfields)(res);
}

char *PQcmdTuples(PGresult *res)
{
    return F(PQcmdTuples)(res);
}

char *PQgetvalue(const PGresult *res, int tup_num, int field_num)
{
    return F(PQgetvalue)(res, tup_num, field_num);
}

int PQgetlength(const PGresult *res, int tup_num, int field_num)
{
    return F(PQgetlength)(res, tup_num, field_num);
}

int PQgetisnull(const PGresult *res, int tup_num, int field_num)
{
    return F(PQgetisnull)(res, tup_num, field_num);
}

unsigned char *PQunescapeBytea(const unsigned char *strtext, size_t *retbuflen)
{
    return F(PQunescapeBytea)(strtext, retbuflen);
}

void PQfreemem(void *ptr)
{
    if (!ptr)
        return;
    F(PQfreemem)(ptr);
}
