/* The incremental checker's fast path: a certifier in C.
 *
 * It follows the same grammar and asks the same views as checker.py, but it never reports a
 * violation itself. It only certifies pieces: "the Python checker, fed the pieces so far, would
 * report nothing". On anything it is not sure of (a possible violation, a syntax error, an escape
 * in a property name or an enum string, a fence, a number with an exponent, a schema feature it
 * doesn't follow: maxProperties, a root scalar, ...) it hands over: the Python
 * checker replays every piece fed so far and carries on alone, so messages, paths and the byte a
 * violation is found at are the Python checker's by construction. Soundness is the one promise
 * this file makes: it may hand over needlessly, never certify what Python would refuse.
 *
 * The end of the stream. ``settle()`` answers "the answer is valid" without the full
 * validation (orjson.loads and the compiled schema) when the root value was read to its end
 * and every position it passed has a closing (views.Closing: only keywords the certifier
 * decides exactly). Then the streaming checks were exact, and what only the end decides is
 * kept while reading: the required names seen in each object (bits in Frame.seen), the items
 * of each array (minItems), each string's length (minLength), and the strings under
 * ``pattern``/``format``, collected per test and checked in one call each at the end.
 * ``plain`` drops to 0 (and the full validation decides, as before) on the first thing outside
 * that: a position without a closing, a count not met, a \uD... escape or a raw surrogate
 * (orjson may refuse the text), a number longer than 15 characters or 1.0 for an integer.
 * settle() only ever says "valid"; a violation at the end is always found, and described, by
 * the full validation.
 *
 * Speed. The machine is one loop over the piece's characters, compiled once per string kind
 * (scan_as: the kind is a constant in each copy). Property names are looked up in a cache
 * shared by every stream (KEYS: a name's view and verdict in a view never change); a name cut
 * by a piece's end is gathered in a small buffer, not a str. Array views keep their items'
 * view in their Info. Numbers of at most 15 characters are read exactly without strtod.
 *
 * Views are read through ``View.summary()`` (views.py), parsed once per view into an Info struct
 * kept in the view's ``fast`` slot.
 *
 * Sections: views (Info from summaries), the machine (strings, names, numbers, scan), the
 * Python type (feed, settle, hand-over).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

enum { K_OBJECT = 1, K_ARRAY = 2, K_STRING = 4, K_NUMBER = 8, K_BOOLEAN = 16, K_NULL = 32 };
enum {
    S_PROSE, S_LEAD, S_VALUE, S_FIRST_ITEM, S_FIRST_KEY, S_KEY, S_COLON, S_AFTER,
    S_STRING, S_NUMBER, S_LITERAL, S_DONE
};
#define MAX_DEPTH 128
#define MAX_BOUNDS 8
#define MAX_NUMBER 40
#define KEY_BUF 64 /* a property name cut by a piece's end is gathered here when it fits */
#define EXACT_NUMBER 15 /* longer numbers: no fast double, and the end goes to full validation */
#define OK 0
#define HAND_OVER 1

typedef struct {
    PyObject *names;   /* sorted tuple of str */
    PyObject *members; /* frozenset of str */
    Py_ssize_t longest;
} Choice;

typedef struct {
    double *numbers; /* the floats of the numbers allowed */
    Py_ssize_t n_numbers;
    int literals; /* 1 true, 2 false, 4 null */
} Scalars;

typedef struct Info {
    int reject;                 /* K_* bits of the kinds refused at their first character */
    Py_ssize_t max_items;       /* -1: none */
    Py_ssize_t str_max;         /* maxLength of a string value, -1: none */
    Py_ssize_t key_max;         /* maxLength of a property name, -1: none */
    Py_ssize_t prefix_len;      /* items with their own view */
    int integer, max_props, key_refused;
    Py_ssize_t n_scalars; /* enum/const entries: a scalar must be in each */
    Scalars *scalars;
    int nbounds;                /* -1: more than MAX_BOUNDS, numbers here go to Python */
    int op[MAX_BOUNDS];         /* 0 minimum, 1 exclusiveMinimum, 2 maximum, 3 exclusiveMaximum */
    double limit[MAX_BOUNDS];
    Choice *str_ch;
    Py_ssize_t n_str_ch;
    Choice *key_ch;
    Py_ssize_t n_key_ch;
    PyObject *children, *items; /* the view's caches (dicts, borrowed: the view owns both) */
    PyObject *rest;             /* the view of the items past the prefix, once looked up */
    struct Info *rest_info;     /* (borrowed: the items cache holds it) */
    /* the closing (views.Closing): when ``exact`` is 0 a stream passing here gets the full
     * validation at its end; else these are what the end decides */
    int exact;
    Py_ssize_t str_min, min_items;
    PyObject *required; /* dict: property name -> its bit in Frame.seen */
    uint64_t need;      /* the bits of every required name */
    PyObject *strings;  /* a test of a list of the strings here (pattern, format), or NULL */
} Info;

typedef struct {
    PyObject *view;
    Info *info;
    PyObject *cache; /* the view's _children (objects) or _items (arrays) dict */
    int is_object;
    Py_ssize_t index;
    PyObject *child; /* the view of the current member's value */
    Info *child_info;
    uint64_t seen; /* the required names seen in this object, as bits (Info.required) */
} Frame;

/* A property name already looked up in a view: the same names come back in every item and
 * every stream. One cache for all streams (a name's verdict in a view never changes); each
 * entry owns its references. Only touched with the GIL held and without calling Python code
 * between reading an entry and using it. Four ways per set, so that a few hot names sharing a
 * set (the slot depends on where the views happen to be allocated) don't evict each other on
 * every item. */
#define KEY_SETS 256
#define KEY_WAYS 4
typedef struct {
    PyObject *view, *key, *child;
    Info *info;
    Py_uhash_t hash;
    uint64_t mask; /* its bit among the view's required names, or 0 */
} KeyEntry;
static KeyEntry KEYS[KEY_SETS][KEY_WAYS];
static unsigned char KEY_VICTIM[KEY_SETS]; /* the way a miss replaces next, per set */

typedef struct {
    PyObject_HEAD
    PyObject *pieces;   /* every piece fed, for a replay */
    PyObject *replay;   /* replay(pieces) -> (python checker, its verdict) */
    PyObject *python;   /* the Python checker after a hand-over */
    PyObject *delegate; /* its feed */
    PyObject *verdict;  /* set by finish_with: what every later feed returns */
    int state;
    Py_ssize_t offset, root_start, root_end;
    PyObject *next;
    Info *next_info;
    Frame stack[MAX_DEPTH];
    int depth;
    /* the string being read */
    int is_key, esc, esc_low; /* esc: 1 after '\\', 2-5 after "\\u" and 0-3 hex digits */
    Py_ssize_t length, max_len;
    Choice *choices;
    Py_ssize_t n_choices;
    PyObject *acc; /* its text so far (keys and strings with choices), or NULL */
    int accumulate;
    int in_kbuf; /* a property name, gathered in kbuf (not in acc) */
    Py_ssize_t klen;
    Py_UCS4 kbuf[KEY_BUF];
    /* the number or literal being read */
    Info *value_info;
    int nstate, nlen;
    char ntok[MAX_NUMBER + 1];
    const char *word;
    int word_at;
    /* the closing: ``plain`` stays 1 while everything read is decided exactly, the end's
     * questions included (see views.Closing); strings under pattern/format are collected */
    int plain;
    Py_ssize_t min_len;  /* minLength of the string being read */
    PyObject *collect;   /* its strings test (borrowed from its Info), or NULL */
    PyObject *collected; /* dict: strings test -> the list of strings it must pass */
} Core;

static PyObject *str_fast, *str_summary, *str_children, *str_items, *str_child, *str_item,
    *str_feed;
static const char *CAPSULE = "guardrail.incremental.info";

/* -- views ------------------------------------------------------------------------------- */

static void free_choices(Choice *ch, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_XDECREF(ch[i].names);
        Py_XDECREF(ch[i].members);
    }
    PyMem_Free(ch);
}

static void free_info(Info *info) {
    Py_XDECREF(info->required);
    Py_XDECREF(info->strings);
    free_choices(info->str_ch, info->n_str_ch);
    free_choices(info->key_ch, info->n_key_ch);
    for (Py_ssize_t i = 0; i < info->n_scalars; i++) PyMem_Free(info->scalars[i].numbers);
    PyMem_Free(info->scalars);
    PyMem_Free(info);
}

static void info_free(PyObject *capsule) {
    Info *info = PyCapsule_GetPointer(capsule, CAPSULE);
    if (info != NULL) free_info(info);
}

/* A tuple of (numbers as floats, literal bits) into Scalars structs. */
static int parse_scalars(PyObject *items, Info *info) {
    if (!PyTuple_Check(items)) return -1;
    Py_ssize_t n = PyTuple_GET_SIZE(items);
    info->scalars = PyMem_Calloc(n ? n : 1, sizeof(Scalars));
    if (info->scalars == NULL) return -1;
    info->n_scalars = n;
    for (Py_ssize_t i = 0; i < info->n_scalars; i++) {
        PyObject *entry = PyTuple_GET_ITEM(items, i);
        if (!PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) != 2) return -1;
        PyObject *numbers = PyTuple_GET_ITEM(entry, 0);
        if (!PyTuple_Check(numbers)) return -1;
        Scalars *sc = &info->scalars[i];
        sc->n_numbers = PyTuple_GET_SIZE(numbers);
        sc->numbers = PyMem_Calloc(sc->n_numbers ? sc->n_numbers : 1, sizeof(double));
        if (sc->numbers == NULL) return -1;
        for (Py_ssize_t k = 0; k < sc->n_numbers; k++)
            sc->numbers[k] = PyFloat_AsDouble(PyTuple_GET_ITEM(numbers, k));
        sc->literals = (int)PyLong_AsLong(PyTuple_GET_ITEM(entry, 1));
    }
    return PyErr_Occurred() ? -1 : 0;
}

static Py_ssize_t as_size(PyObject *tuple, Py_ssize_t at) {
    return PyLong_AsSsize_t(PyTuple_GET_ITEM(tuple, at));
}

/* A tuple of (names, members, longest) into Choice structs. */
static int parse_choices(PyObject *items, Choice **out, Py_ssize_t *n) {
    if (!PyTuple_Check(items)) return -1;
    *n = PyTuple_GET_SIZE(items);
    *out = PyMem_Calloc(*n ? *n : 1, sizeof(Choice));
    if (*out == NULL) return -1;
    for (Py_ssize_t i = 0; i < *n; i++) {
        PyObject *c = PyTuple_GET_ITEM(items, i);
        if (!PyTuple_Check(c) || PyTuple_GET_SIZE(c) != 3) return -1;
        (*out)[i].names = Py_NewRef(PyTuple_GET_ITEM(c, 0));
        (*out)[i].members = Py_NewRef(PyTuple_GET_ITEM(c, 1));
        (*out)[i].longest = PyLong_AsSsize_t(PyTuple_GET_ITEM(c, 2));
        if (!PyTuple_Check((*out)[i].names) || !PyFrozenSet_Check((*out)[i].members)) return -1;
    }
    return 0;
}

/* The closing, (str_min, min_items, {name: bit}, strings test or None), or None: not exact. */
static int parse_closing(PyObject *closing, Info *info) {
    if (closing == Py_None) return 0;
    if (!PyTuple_Check(closing) || PyTuple_GET_SIZE(closing) != 4) return -1;
    PyObject *required = PyTuple_GET_ITEM(closing, 2);
    PyObject *strings = PyTuple_GET_ITEM(closing, 3);
    if (!PyDict_CheckExact(required) || PyDict_GET_SIZE(required) > 64) return -1;
    info->str_min = as_size(closing, 0);
    info->min_items = as_size(closing, 1);
    info->required = Py_NewRef(required);
    Py_ssize_t n = PyDict_GET_SIZE(required);
    info->need = n == 64 ? ~(uint64_t)0 : (((uint64_t)1 << n) - 1);
    info->strings = strings == Py_None ? NULL : Py_NewRef(strings);
    info->exact = !PyErr_Occurred();
    return info->exact ? 0 : -1;
}

static Info *parse_info(PyObject *s) {
    /* (reject, max_items, str_max, str_choices, integer, scalars, bounds, max_props,
     *  key_refused, key_max, key_choices, prefix_len, closing) */
    if (!PyTuple_Check(s) || PyTuple_GET_SIZE(s) != 13) {
        PyErr_SetString(PyExc_TypeError, "a view summary is a 13-tuple");
        return NULL;
    }
    Info *info = PyMem_Calloc(1, sizeof(Info));
    if (info == NULL) return NULL;
    info->reject = (int)as_size(s, 0);
    info->max_items = as_size(s, 1);
    info->str_max = as_size(s, 2);
    info->integer = PyObject_IsTrue(PyTuple_GET_ITEM(s, 4));

    info->max_props = PyObject_IsTrue(PyTuple_GET_ITEM(s, 7));
    info->key_refused = PyObject_IsTrue(PyTuple_GET_ITEM(s, 8));
    info->key_max = as_size(s, 9);
    info->prefix_len = as_size(s, 11);
    PyObject *bounds = PyTuple_GET_ITEM(s, 6);
    int bad = !PyTuple_Check(bounds);
    if (!bad && PyTuple_GET_SIZE(bounds) > MAX_BOUNDS) {
        info->nbounds = -1; /* more than it keeps: every number here goes to Python */
    } else if (!bad) {
        info->nbounds = (int)PyTuple_GET_SIZE(bounds);
        for (int i = 0; i < info->nbounds; i++) {
            PyObject *b = PyTuple_GET_ITEM(bounds, i);
            info->op[i] = (int)PyLong_AsLong(PyTuple_GET_ITEM(b, 0));
            info->limit[i] = PyFloat_AsDouble(PyTuple_GET_ITEM(b, 1));
        }
    }
    if (bad || parse_scalars(PyTuple_GET_ITEM(s, 5), info) < 0 ||
        parse_choices(PyTuple_GET_ITEM(s, 3), &info->str_ch, &info->n_str_ch) < 0 ||
        parse_choices(PyTuple_GET_ITEM(s, 10), &info->key_ch, &info->n_key_ch) < 0 ||
        parse_closing(PyTuple_GET_ITEM(s, 12), info) < 0 || PyErr_Occurred()) {
        free_info(info);
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "a malformed view summary");
        return NULL;
    }
    return info;
}

/* The Info of a view, built on first use and kept in its ``fast`` slot. */
static Info *info_of(PyObject *view) {
    PyObject *capsule = PyObject_GetAttr(view, str_fast);
    if (capsule == NULL) return NULL;
    if (capsule == Py_None) {
        Py_DECREF(capsule);
        PyObject *summary = PyObject_CallMethodNoArgs(view, str_summary);
        if (summary == NULL) return NULL;
        Info *info = parse_info(summary);
        Py_DECREF(summary);
        if (info == NULL) return NULL;
        capsule = PyCapsule_New(info, CAPSULE, info_free);
        if (capsule == NULL) {
            PyMem_Free(info);
            return NULL;
        }
        /* summary() ran Python code: another thread may have set the slot meanwhile. Keep
         * theirs then (replacing it would free an Info their frames point to). No Python code
         * runs from here to the assignment, so the check holds. */
        PyObject *theirs = PyObject_GetAttr(view, str_fast);
        if (theirs == NULL) {
            Py_DECREF(capsule);
            return NULL;
        }
        if (theirs != Py_None) {
            Py_DECREF(capsule);
            capsule = theirs;
        } else {
            Py_DECREF(theirs);
            if (PyObject_SetAttr(view, str_fast, capsule) < 0) {
                Py_DECREF(capsule);
                return NULL;
            }
        }
    }
    Info *info = PyCapsule_GetPointer(capsule, CAPSULE);
    Py_DECREF(capsule); /* the view keeps it */
    if (info != NULL && info->children == NULL) {
        PyObject *children = PyObject_GetAttr(view, str_children);
        PyObject *items = PyObject_GetAttr(view, str_items);
        /* Borrowed: the view holds them as long as it holds the Info. */
        Py_XDECREF(children);
        Py_XDECREF(items);
        if (children == NULL || items == NULL || !PyDict_CheckExact(children) ||
            !PyDict_CheckExact(items)) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "a view without caches");
            return NULL;
        }
        info->children = children;
        info->items = items;
    }
    return info;
}

/* A new reference to the view of property ``key`` (from the view's cache, else view.child). */
static PyObject *child_of(PyObject *view, PyObject *cache, PyObject *key) {
    PyObject *hit = PyDict_GetItemWithError(cache, key);
    if (hit != NULL) return Py_NewRef(hit);
    if (PyErr_Occurred()) return NULL;
    return PyObject_CallMethodOneArg(view, str_child, key);
}

static PyObject *item_of(PyObject *view, PyObject *cache, Info *info, Py_ssize_t index) {
    if (index > info->prefix_len) index = info->prefix_len;
    PyObject *at = PyLong_FromSsize_t(index);
    if (at == NULL) return NULL;
    PyObject *hit = PyDict_GetItemWithError(cache, at);
    PyObject *result = NULL;
    if (hit != NULL)
        result = Py_NewRef(hit);
    else if (!PyErr_Occurred())
        result = PyObject_CallMethodOneArg(view, str_item, at);
    Py_DECREF(at);
    return result;
}

/* -- the machine ------------------------------------------------------------------------- */

/* The one-byte characters that end a run of plain string content. */
static unsigned char STOPS_STRING[256];

static void init_tables(void) {
    for (int ch = 0; ch < 0x20; ch++) STOPS_STRING[ch] = 1;
    STOPS_STRING['"'] = STOPS_STRING['\\'] = 1;
}

static inline int is_ws(Py_UCS4 c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static inline int kind_of(Py_UCS4 c) {
    switch (c) {
    case '{': return K_OBJECT;
    case '[': return K_ARRAY;
    case '"': return K_STRING;
    case 't': case 'f': return K_BOOLEAN;
    case 'n': return K_NULL;
    case '-': case '0': case '1': case '2': case '3': case '4':
    case '5': case '6': case '7': case '8': case '9': return K_NUMBER;
    default: return 0;
    }
}

/* The number grammar as in lexer.NUMBER_STEPS: the next state, or -1. */
static inline int number_step(int state, Py_UCS4 c) {
    int digit = c >= '0' && c <= '9';
    switch (state) {
    case 0: return c == '-' ? 1 : c == '0' ? 2 : digit ? 3 : -1;
    case 1: return c == '0' ? 2 : digit ? 3 : -1;
    case 2: return c == '.' ? 4 : (c == 'e' || c == 'E') ? 6 : -1;
    case 3: return c == '.' ? 4 : (c == 'e' || c == 'E') ? 6 : digit ? 3 : -1;
    case 4: return digit ? 5 : -1;
    case 5: return (c == 'e' || c == 'E') ? 6 : digit ? 5 : -1;
    case 6: return (c == '+' || c == '-') ? 7 : digit ? 8 : -1;
    case 7: case 8: return digit ? 8 : -1;
    default: return -1;
    }
}

static inline int number_end(int state) { return state == 2 || state == 3 || state == 5 || state == 8; }

static void clear_stack(Core *c) {
    for (int i = 0; i < c->depth; i++) {
        Py_CLEAR(c->stack[i].view);
        Py_CLEAR(c->stack[i].cache);
        Py_CLEAR(c->stack[i].child);
    }
    c->depth = 0;
}

static void set_next(Core *c, PyObject *view, Info *info) {
    Py_XSETREF(c->next, view); /* steals */
    c->next_info = info;
}

static void end_value(Core *c, Py_ssize_t end) {
    if (c->depth > 0) {
        c->state = S_AFTER;
    } else {
        c->state = S_DONE;
        c->root_end = end;
    }
}

static int push(Core *c, int is_object) {
    if (c->depth >= MAX_DEPTH) return HAND_OVER;
    Info *info = c->next_info;
    if (is_object && (info->max_props || info->key_refused)) return HAND_OVER;
    Frame *f = &c->stack[c->depth++];
    f->cache = Py_NewRef(is_object ? info->children : info->items);
    f->view = Py_NewRef(c->next);
    f->info = info;
    f->is_object = is_object;
    f->index = 0;
    f->child = NULL;
    f->child_info = NULL;
    f->seen = 0;
    c->state = is_object ? S_FIRST_KEY : S_FIRST_ITEM;
    return OK;
}

/* The container on top closes just before ``end``, an array with ``count`` items: what its
 * end decides (required names, minItems). */
static void pop(Core *c, Py_ssize_t end, Py_ssize_t count) {
    Frame *f = &c->stack[--c->depth];
    if (f->is_object ? (f->seen & f->info->need) != f->info->need : count < f->info->min_items)
        c->plain = 0;
    Py_CLEAR(f->view);
    Py_CLEAR(f->cache);
    Py_CLEAR(f->child);
    end_value(c, end);
}

/* The item ``f->index`` is due next: its view becomes the next value's. */
static int item_due(Core *c, Frame *f) {
    Info *array = f->info;
    int rest = f->index >= array->prefix_len;
    if (rest && array->rest != NULL) {
        set_next(c, Py_NewRef(array->rest), array->rest_info);
        c->state = S_VALUE;
        return OK;
    }
    PyObject *view = item_of(f->view, f->cache, array, f->index);
    if (view == NULL) return HAND_OVER;
    Info *info = info_of(view);
    if (info == NULL) {
        Py_DECREF(view);
        return HAND_OVER;
    }
    if (rest) { /* the array view's items cache holds it (View.item never replaces one) */
        array->rest = view;
        array->rest_info = info;
    }
    set_next(c, view, info);
    c->state = S_VALUE;
    return OK;
}

static void begin_string(Core *c, int is_key, Info *info) {
    c->is_key = is_key;
    c->esc = 0;
    c->length = 0;
    if (is_key) {
        c->max_len = info->key_max;
        c->choices = info->key_ch;
        c->n_choices = info->n_key_ch;
        c->min_len = 0;
        c->collect = NULL;
    } else {
        c->max_len = info->str_max;
        c->choices = info->str_ch;
        c->n_choices = info->n_str_ch;
        c->min_len = info->str_min;
        c->collect = c->plain ? info->strings : NULL;
    }
    c->accumulate = is_key || c->n_choices > 0 || c->collect != NULL;
    c->in_kbuf = is_key;
    c->klen = 0;
    Py_CLEAR(c->acc);
    c->state = S_STRING;
}

static int admits_prefix(Choice *ch, PyObject *text) {
    Py_ssize_t len = PyUnicode_GET_LENGTH(text);
    if (len > ch->longest) return 0;
    Py_ssize_t lo = 0, hi = PyTuple_GET_SIZE(ch->names);
    while (lo < hi) { /* bisect_left */
        Py_ssize_t mid = (lo + hi) / 2;
        int cmp = PyUnicode_Compare(PyTuple_GET_ITEM(ch->names, mid), text);
        if (cmp == -1 && PyErr_Occurred()) return -1;
        if (cmp < 0) lo = mid + 1;
        else hi = mid;
    }
    if (lo == PyTuple_GET_SIZE(ch->names)) return 0;
    return (int)PyUnicode_Tailmatch(PyTuple_GET_ITEM(ch->names, lo), text, 0, PY_SSIZE_T_MAX, -1);
}

static int in_choices(Core *c, PyObject *text) {
    for (Py_ssize_t i = 0; i < c->n_choices; i++)
        if (PySet_Contains(c->choices[i].members, text) != 1) return HAND_OVER;
    return OK;
}

static PyObject *empty_str(void) { return PyUnicode_New(0, 0); }

/* Keep a string for its strings test at the end (views.Closing). */
static int collect(Core *c, PyObject *text) {
    if (c->collected == NULL && (c->collected = PyDict_New()) == NULL) return -1;
    PyObject *list = PyDict_GetItemWithError(c->collected, c->collect);
    if (list == NULL) {
        if (PyErr_Occurred() || (list = PyList_New(0)) == NULL) return -1;
        int failed = PyDict_SetItem(c->collected, c->collect, list);
        Py_DECREF(list);
        if (failed) return -1;
    }
    return PyList_Append(list, text);
}

static int key_read(Core *c, PyObject *source, int kind, const void *data, Py_ssize_t a,
                    Py_ssize_t b);

/* A string's closing quote was read (the quote ends just before ``end``). */
static int string_done(Core *c, Py_ssize_t end) {
    if (c->is_key && c->in_kbuf) /* a name cut by a piece's end */
        return key_read(c, NULL, PyUnicode_4BYTE_KIND, c->kbuf, 0, c->klen);
    PyObject *text = c->acc;
    if (c->accumulate && text == NULL) {
        text = c->acc = empty_str();
        if (text == NULL) return HAND_OVER;
    }
    if (c->is_key) { /* a long name cut by a piece's end */
        c->acc = NULL;
        int result = key_read(c, text, PyUnicode_KIND(text), PyUnicode_DATA(text), 0,
                              PyUnicode_GET_LENGTH(text));
        Py_DECREF(text);
        return result;
    }
    if (c->n_choices && in_choices(c, text) != OK) return HAND_OVER;
    if (c->length < c->min_len) c->plain = 0;
    if (c->collect != NULL && c->plain && collect(c, text) < 0) {
        PyErr_Clear();
        c->plain = 0;
    }
    Py_CLEAR(c->acc);
    end_value(c, end);
    return OK;
}

/* The cache slot of a name in a view: from the view, the length and four characters (the
 * entry's full comparison decides; names differing only elsewhere merely share a slot). */
static inline Py_uhash_t key_hash(PyObject *view, int kind, const void *data, Py_ssize_t a,
                                  Py_ssize_t b) {
    uint64_t h = (uint64_t)(uintptr_t)view ^ (uint64_t)(b - a) << 48;
    if (b > a) {
        Py_ssize_t len = b - a;
        h ^= (uint64_t)PyUnicode_READ(kind, data, a) << 8;
        h ^= (uint64_t)PyUnicode_READ(kind, data, a + len / 2) << 16;
        h ^= (uint64_t)PyUnicode_READ(kind, data, b - 1) << 24;
        h ^= (uint64_t)PyUnicode_READ(kind, data, a + (len - 1) / 3) << 32;
    }
    h *= 0x9E3779B97F4A7C15u;
    return (Py_uhash_t)(h ^ (h >> 29));
}

/* Its bit among the view's required names, or 0. */
static uint64_t key_mask(Info *info, PyObject *key) {
    if (info->required == NULL || PyDict_GET_SIZE(info->required) == 0) return 0;
    PyObject *bit = PyDict_GetItemWithError(info->required, key);
    if (bit == NULL) return 0;
    long at = PyLong_AsLong(bit);
    return at >= 0 && at < 64 ? (uint64_t)1 << at : 0;
}

/* A property name read whole, [a, b) of ``source`` (a piece, or the name gathered across
 * pieces; NULL: ``data`` is kbuf): its value's view from the cache, else looked up (and cached
 * when it passed). */
static int key_read(Core *c, PyObject *source, int kind, const void *data, Py_ssize_t a,
                    Py_ssize_t b) {
    Frame *f = &c->stack[c->depth - 1];
    Py_uhash_t h = key_hash(f->view, kind, data, a, b);
    KeyEntry *set = KEYS[h % KEY_SETS];
    for (int way = 0; way < KEY_WAYS; way++) {
        KeyEntry *e = &set[way];
        if (e->view != f->view || e->hash != h || PyUnicode_GET_LENGTH(e->key) != b - a)
            continue;
        int ekind = PyUnicode_KIND(e->key);
        const void *edata = PyUnicode_DATA(e->key);
        int same;
        if (ekind == kind) {
            same = memcmp(edata, (const char *)data + a * kind, (size_t)((b - a) * kind)) == 0;
        } else {
            Py_ssize_t k = 0;
            while (k < b - a &&
                   PyUnicode_READ(ekind, edata, k) == PyUnicode_READ(kind, data, a + k))
                k++;
            same = k == b - a;
        }
        if (same) { /* passed before in this view: the same verdict */
            Py_XSETREF(f->child, Py_NewRef(e->child));
            f->child_info = e->info;
            f->seen |= e->mask;
            c->state = S_COLON;
            return OK;
        }
    }
    PyObject *key;
    if (source == NULL)
        key = PyUnicode_FromKindAndData(PyUnicode_4BYTE_KIND, (const Py_UCS4 *)data + a, b - a);
    else if (a == 0 && b == PyUnicode_GET_LENGTH(source))
        key = Py_NewRef(source);
    else
        key = PyUnicode_Substring(source, a, b);
    if (key == NULL) return HAND_OVER;
    if (c->n_choices && in_choices(c, key) != OK) {
        Py_DECREF(key);
        return HAND_OVER;
    }
    PyObject *child = child_of(f->view, f->cache, key);
    Info *info = child == NULL || child == Py_None ? NULL : info_of(child);
    if (info == NULL) {
        Py_XDECREF(child);
        Py_DECREF(key);
        return HAND_OVER;
    }
    uint64_t mask = key_mask(f->info, key);
    if (PyErr_Occurred()) {
        Py_DECREF(child);
        Py_DECREF(key);
        return HAND_OVER;
    }
    Py_XSETREF(f->child, child);
    f->child_info = info;
    f->seen |= mask;
    c->state = S_COLON;
    KeyEntry *e = &set[KEY_VICTIM[h % KEY_SETS]++ % KEY_WAYS];
    Py_XSETREF(e->view, Py_NewRef(f->view));
    Py_XSETREF(e->key, key);
    Py_XSETREF(e->child, Py_NewRef(child));
    e->info = info;
    e->hash = h;
    e->mask = mask;
    return OK;
}

/* 10^k, exact as doubles. */
static const double POW10[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8,
                               1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16};

/* A number ended (in state ``c->nstate``, its text in ``ntok``). */
static int number_done(Core *c) {
    Info *info = c->value_info;
    int numeric = info->integer || info->nbounds || info->n_scalars;
    if (c->nstate == 8 || info->nbounds < 0) return HAND_OVER; /* an exponent: to Python */
    if (c->nlen > EXACT_NUMBER) c->plain = 0; /* orjson may read it as a float */
    if (!numeric) return OK;
    if (c->nlen > EXACT_NUMBER) return HAND_OVER;
    /* At most 15 characters: the digits make an integer below 2^53 and the fraction has at
     * most 14 digits, so one division of two exact doubles gives the correctly rounded
     * value, as strtod and orjson do. */
    uint64_t digits = 0;
    int fraction = 0, after_dot = 0;
    for (int k = c->ntok[0] == '-'; k < c->nlen; k++) {
        char ch = c->ntok[k];
        if (ch == '.') {
            after_dot = 1;
        } else {
            digits = digits * 10 + (uint64_t)(ch - '0');
            fraction += after_dot;
        }
    }
    double v = (double)digits / POW10[fraction];
    if (c->ntok[0] == '-') v = -v;
    if (info->integer && after_dot) {
        if (v != floor(v)) return HAND_OVER;
        c->plain = 0; /* 1.0: an integer to some validators, not to others */
    }
    for (int i = 0; i < info->nbounds; i++) {
        double limit = info->limit[i];
        /* As Python's _beyond_as_floats: both sides as doubles (strtod and orjson both round
         * correctly), which must agree for Python to fail, so it alone is a sound test. */
        int beyond;
        switch (info->op[i]) {
        case 0: beyond = v < limit; break;
        case 1: beyond = v <= limit; break;
        case 2: beyond = v > limit; break;
        default: beyond = v >= limit; break;
        }
        if (beyond) return HAND_OVER;
    }
    for (Py_ssize_t k = 0; k < info->n_scalars; k++) { /* each enum/const: v among its numbers */
        Scalars *sc = &info->scalars[k];
        Py_ssize_t at = 0;
        while (at < sc->n_numbers && sc->numbers[at] != v) at++;
        if (at == sc->n_numbers) return HAND_OVER;
    }
    return OK;
}

static int append_run(Core *c, PyObject *text, Py_ssize_t start, Py_ssize_t end) {
    PyObject *run = PyUnicode_Substring(text, start, end);
    if (run == NULL) return HAND_OVER;
    if (c->acc == NULL) {
        c->acc = run;
        return OK;
    }
    PyUnicode_Append(&c->acc, run);
    Py_DECREF(run);
    return c->acc == NULL ? HAND_OVER : OK;
}

/* A run of string text [i, j) of ``text`` appended to ``acc`` (a name past kbuf moves there). */
static int gather_long(Core *c, PyObject *text, Py_ssize_t i, Py_ssize_t j) {
    if (c->in_kbuf) {
        c->in_kbuf = 0;
        c->acc = PyUnicode_FromKindAndData(PyUnicode_4BYTE_KIND, c->kbuf, c->klen);
        if (c->acc == NULL) return HAND_OVER;
    }
    return append_run(c, text, i, j);
}

/* ``admits_prefix`` for the name gathered in kbuf. */
static int admits_kbuf(Choice *ch, const Py_UCS4 *buf, Py_ssize_t len) {
    if (len > ch->longest) return 0;
    Py_ssize_t lo = 0, hi = PyTuple_GET_SIZE(ch->names);
    while (lo < hi) { /* bisect_left, in code point order as str comparison */
        Py_ssize_t mid = (lo + hi) / 2;
        PyObject *name = PyTuple_GET_ITEM(ch->names, mid);
        int kind = PyUnicode_KIND(name);
        const void *data = PyUnicode_DATA(name);
        Py_ssize_t m = PyUnicode_GET_LENGTH(name), k = 0;
        while (k < m && k < len && PyUnicode_READ(kind, data, k) == buf[k]) k++;
        int less = k < m && k < len ? PyUnicode_READ(kind, data, k) < buf[k] : m < len;
        if (less) lo = mid + 1;
        else hi = mid;
    }
    if (lo == PyTuple_GET_SIZE(ch->names)) return 0;
    PyObject *name = PyTuple_GET_ITEM(ch->names, lo);
    if (PyUnicode_GET_LENGTH(name) < len) return 0;
    int kind = PyUnicode_KIND(name);
    const void *data = PyUnicode_DATA(name);
    for (Py_ssize_t k = 0; k < len; k++)
        if (PyUnicode_READ(kind, data, k) != buf[k]) return 0;
    return 1;
}

/* Read one piece: the machine, compiled once per string kind (``kind`` is a constant in each
 * copy, so reading a character is one load). OK: certified; HAND_OVER: let Python decide (an
 * error may be set: cleared). */
static inline __attribute__((always_inline)) int scan_as(Core *c, PyObject *text, const int kind,
                                                         const void *data, Py_ssize_t n) {
    Py_ssize_t i = 0;
    while (i < n) {
        Py_UCS4 ch = PyUnicode_READ(kind, data, i);
        switch (c->state) {
        case S_DONE:
            return OK;
        case S_PROSE:
            if (ch == '{' || ch == '[') c->state = S_VALUE;
            else i++;
            break;
        case S_LEAD:
            if (is_ws(ch)) i++;
            else if (ch == '`') return HAND_OVER;
            else c->state = S_VALUE;
            break;
        case S_VALUE: {
            if (is_ws(ch)) {
                i++;
                break;
            }
            int k = kind_of(ch);
            if (k == 0) return HAND_OVER;
            if (c->depth == 0) {
                if (k != K_OBJECT && k != K_ARRAY) return HAND_OVER;
                c->root_start = c->offset + i;
            }
            Info *info = c->next_info;
            if (info->reject & k) return HAND_OVER;
            if (!info->exact) c->plain = 0; /* the end can't be decided here */
            switch (k) {
            case K_OBJECT:
            case K_ARRAY:
                if (push(c, k == K_OBJECT) != OK) return HAND_OVER;
                i++;
                break;
            case K_STRING:
                begin_string(c, 0, info);
                i++;
                break;
            case K_NUMBER:
                c->value_info = info;
                c->nstate = 0;
                c->nlen = 0;
                c->state = S_NUMBER;
                break;
            default:
                c->value_info = info;
                c->word = ch == 't' ? "true" : ch == 'f' ? "false" : "null";
                c->word_at = 0;
                c->state = S_LITERAL;
            }
            break;
        }
        case S_FIRST_ITEM: {
            if (is_ws(ch)) {
                i++;
                break;
            }
            Frame *f = &c->stack[c->depth - 1];
            if (ch == ']') {
                i++;
                pop(c, c->offset + i, 0);
                break;
            }
            if (kind_of(ch) && f->info->max_items == 0) return HAND_OVER;
            if (item_due(c, f) != OK) return HAND_OVER;
            break;
        }
        case S_FIRST_KEY:
        case S_KEY: {
            if (is_ws(ch)) {
                i++;
                break;
            }
            Frame *f = &c->stack[c->depth - 1];
            if (ch == '}' && c->state == S_FIRST_KEY) {
                i++;
                pop(c, c->offset + i, 0);
                break;
            }
            if (ch != '"') return HAND_OVER;
            begin_string(c, 1, f->info);
            i++;
            break;
        }
        case S_COLON: {
            if (is_ws(ch)) {
                i++;
                break;
            }
            if (ch != ':') return HAND_OVER;
            Frame *f = &c->stack[c->depth - 1];
            set_next(c, Py_NewRef(f->child), f->child_info);
            c->state = S_VALUE;
            i++;
            break;
        }
        case S_AFTER: {
            if (is_ws(ch)) {
                i++;
                break;
            }
            Frame *f = &c->stack[c->depth - 1];
            if (ch == ',') {
                i++;
                if (f->is_object) {
                    c->state = S_KEY;
                    break;
                }
                f->index++;
                if (f->info->max_items >= 0 && f->index >= f->info->max_items) return HAND_OVER;
                if (item_due(c, f) != OK) return HAND_OVER;
                break;
            }
            if (ch == (Py_UCS4)(f->is_object ? '}' : ']')) {
                i++;
                pop(c, c->offset + i, f->index + 1);
                break;
            }
            return HAND_OVER;
        }
        case S_STRING: {
            if (c->esc) { /* in strings whose text nothing checks: syntax, and the length */
                int counted = -1; /* the escape's length once complete */
                if (c->esc == 1) {
                    if (ch == 'u') c->esc = 2;
                    else if (ch == '"' || ch == '\\' || ch == '/' || ch == 'b' || ch == 'f' ||
                             ch == 'n' || ch == 'r' || ch == 't')
                        counted = 1;
                    else return HAND_OVER;
                } else {
                    int hex = (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') ||
                              (ch >= 'A' && ch <= 'F');
                    if (!hex) return HAND_OVER;
                    /* As Python's _escaped: a \uDC00-\uDFFF escape ends a surrogate pair,
                     * one character with the escape before it, so it adds nothing. */
                    if (c->esc == 2) {
                        c->esc_low = ch == 'd' || ch == 'D';
                        if (c->esc_low) c->plain = 0; /* maybe a lone surrogate: orjson decides */
                    }
                    else if (c->esc == 3)
                        c->esc_low = c->esc_low && ((ch >= 'c' && ch <= 'f') || (ch >= 'C' && ch <= 'F'));
                    if (c->esc == 5) counted = c->esc_low ? 0 : 1;
                    else c->esc++;
                }
                if (counted >= 0) {
                    c->esc = 0;
                    c->length += counted;
                    if (c->max_len >= 0 && c->length > c->max_len) return HAND_OVER;
                }
                i++;
                break;
            }
            Py_ssize_t j = i;
            Py_UCS4 d = 0;
            if (kind == PyUnicode_1BYTE_KIND) { /* most text: one byte per character */
                const Py_UCS1 *bytes = data;
                while (j < n && !STOPS_STRING[bytes[j]]) j++;
                if (j < n) d = bytes[j];
            } else {
                for (; j < n; j++) {
                    d = PyUnicode_READ(kind, data, j);
                    if (d == '"' || d == '\\' || d < 0x20) break;
                    if (Py_UNICODE_IS_SURROGATE(d)) c->plain = 0; /* not UTF-8: orjson refuses */
                }
            }
            /* A property name that opens and closes in this piece: looked up from the piece. */
            int whole_key = c->is_key && c->acc == NULL && c->klen == 0 && j < n && d == '"';
            if (j > i) {
                c->length += j - i;
                if (c->max_len >= 0 && c->length > c->max_len) return HAND_OVER;
                if (c->accumulate && !whole_key) {
                    if (c->in_kbuf && c->klen + (j - i) <= KEY_BUF) {
                        for (Py_ssize_t k = i; k < j; k++)
                            c->kbuf[c->klen++] = PyUnicode_READ(kind, data, k);
                    } else if (gather_long(c, text, i, j) != OK) {
                        return HAND_OVER;
                    }
                }
            }
            if (whole_key) {
                if (key_read(c, text, kind, data, i, j) != OK) return HAND_OVER;
                i = j + 1;
                if (i < n && PyUnicode_READ(kind, data, i) == ':') { /* the usual "name": */
                    Frame *f = &c->stack[c->depth - 1];
                    set_next(c, Py_NewRef(f->child), f->child_info);
                    c->state = S_VALUE;
                    i++;
                }
                break;
            }
            i = j;
            if (j == n) break;
            if (d == '"') {
                i++;
                if (string_done(c, c->offset + i) != OK) return HAND_OVER;
            } else if (d == '\\' && !c->accumulate) {
                c->esc = 1;
                i++;
            } else if (d == '\\' && c->collect != NULL && !c->is_key && !c->n_choices) {
                /* An escape in a string kept for its strings test: keep none, and leave the
                 * end to the full validation. */
                c->collect = NULL;
                c->accumulate = 0;
                c->plain = 0;
                Py_CLEAR(c->acc);
                c->esc = 1;
                i++;
            } else {
                return HAND_OVER;
            }
            break;
        }
        case S_NUMBER: {
            int state = c->nstate;
            for (; i < n; i++) {
                Py_UCS4 d = PyUnicode_READ(kind, data, i);
                int to = number_step(state, d);
                if (to < 0) break;
                if (c->nlen >= MAX_NUMBER) return HAND_OVER;
                c->ntok[c->nlen++] = (char)d;
                state = to;
            }
            c->nstate = state;
            if (i == n) break;
            if (!number_end(state) || number_done(c) != OK) return HAND_OVER;
            end_value(c, c->offset + i);
            break;
        }
        case S_LITERAL: {
            const char *word = c->word;
            while (i < n && word[c->word_at]) {
                if (PyUnicode_READ(kind, data, i) != (Py_UCS4)(unsigned char)word[c->word_at])
                    return HAND_OVER;
                i++;
                c->word_at++;
            }
            if (word[c->word_at] == '\0') {
                int bit = word[0] == 't' ? 1 : word[0] == 'f' ? 2 : 4;
                Info *info = c->value_info;
                for (Py_ssize_t k = 0; k < info->n_scalars; k++)
                    if (!(info->scalars[k].literals & bit)) return HAND_OVER;
                end_value(c, c->offset + i);
            }
            break;
        }
        }
    }
    return OK;
}

static int scan(Core *c, PyObject *text) {
    const void *data = PyUnicode_DATA(text);
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    int result;
    switch (PyUnicode_KIND(text)) {
    case PyUnicode_1BYTE_KIND: result = scan_as(c, text, PyUnicode_1BYTE_KIND, data, n); break;
    case PyUnicode_2BYTE_KIND: result = scan_as(c, text, PyUnicode_2BYTE_KIND, data, n); break;
    default: result = scan_as(c, text, PyUnicode_4BYTE_KIND, data, n);
    }
    if (result != OK) return result;
    if (c->state == S_STRING && c->n_choices && c->is_key && c->in_kbuf) {
        for (Py_ssize_t k = 0; k < c->n_choices; k++)
            if (!admits_kbuf(&c->choices[k], c->kbuf, c->klen)) return HAND_OVER;
    } else if (c->state == S_STRING && c->n_choices) { /* can it still become a choice? */
        PyObject *so_far = c->acc ? Py_NewRef(c->acc) : empty_str();
        if (so_far == NULL) return HAND_OVER;
        for (Py_ssize_t k = 0; k < c->n_choices; k++) {
            if (admits_prefix(&c->choices[k], so_far) != 1) {
                Py_DECREF(so_far);
                return HAND_OVER;
            }
        }
        Py_DECREF(so_far);
    }
    return OK;
}

/* -- the Python type ------------------------------------------------------------------- */

static PyObject *hand_over(Core *c) {
    PyErr_Clear();
    PyObject *pair = PyObject_CallOneArg(c->replay, c->pieces);
    if (pair == NULL) return NULL;
    if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
        Py_DECREF(pair);
        PyErr_SetString(PyExc_TypeError, "replay must return (checker, verdict)");
        return NULL;
    }
    Py_XSETREF(c->python, Py_NewRef(PyTuple_GET_ITEM(pair, 0)));
    Py_XSETREF(c->delegate, PyObject_GetAttr(c->python, str_feed));
    PyObject *verdict = Py_NewRef(PyTuple_GET_ITEM(pair, 1));
    Py_DECREF(pair);
    if (c->delegate == NULL) {
        Py_DECREF(verdict);
        return NULL;
    }
    clear_stack(c);
    Py_CLEAR(c->pieces);
    Py_CLEAR(c->acc);
    Py_CLEAR(c->next);
    Py_CLEAR(c->collected);
    c->plain = 0;
    return verdict;
}

static PyObject *Core_feed(Core *c, PyObject *text) {
    if (c->verdict != NULL) return Py_NewRef(c->verdict);
    if (c->delegate != NULL) return PyObject_CallOneArg(c->delegate, text);
    if (!PyUnicode_Check(text)) {
        PyErr_SetString(PyExc_TypeError, "feed() takes a str");
        return NULL;
    }
    if (c->state == S_DONE) { /* the rest is ignored */
        c->offset += PyUnicode_GET_LENGTH(text);
        Py_RETURN_NONE;
    }
    if (PyList_Append(c->pieces, text) < 0) return NULL;
    if (scan(c, text) != OK) return hand_over(c);
    c->offset += PyUnicode_GET_LENGTH(text);
    Py_RETURN_NONE;
}

/* Whether the answer is valid, decided without the full validation: the root value was read
 * to its end, everything met was decided exactly (``plain``) and the collected strings pass
 * their tests. False says nothing: the full validation decides then. */
static PyObject *Core_settle(Core *c, PyObject *unused) {
    if (c->delegate != NULL || c->state != S_DONE || !c->plain) Py_RETURN_FALSE;
    if (c->collected != NULL) {
        Py_ssize_t at = 0;
        PyObject *test, *strings;
        while (PyDict_Next(c->collected, &at, &test, &strings)) {
            PyObject *passed = PyObject_CallOneArg(test, strings);
            int ok = passed != NULL && PyObject_IsTrue(passed) == 1;
            Py_XDECREF(passed);
            if (!ok) {
                PyErr_Clear();
                Py_RETURN_FALSE;
            }
        }
    }
    Py_RETURN_TRUE;
}

static PyObject *Core_finish_with(Core *c, PyObject *verdict) {
    Py_XSETREF(c->verdict, Py_NewRef(verdict));
    Py_RETURN_NONE;
}

static int Core_init(Core *c, PyObject *args, PyObject *kwds) {
    PyObject *root, *replay;
    int wants_container;
    if (!PyArg_ParseTuple(args, "OpO:Certifier", &root, &wants_container, &replay)) return -1;
    Info *info = info_of(root);
    if (info == NULL) return -1;
    Py_XSETREF(c->pieces, PyList_New(0));
    if (c->pieces == NULL) return -1;
    Py_XSETREF(c->replay, Py_NewRef(replay));
    set_next(c, Py_NewRef(root), info);
    c->state = wants_container ? S_PROSE : S_LEAD;
    c->root_start = c->root_end = -1;
    c->plain = 1;
    return 0;
}

static int Core_traverse(Core *c, visitproc visit, void *arg) {
    Py_VISIT(c->pieces);
    Py_VISIT(c->replay);
    Py_VISIT(c->python);
    Py_VISIT(c->delegate);
    Py_VISIT(c->verdict);
    Py_VISIT(c->next);
    Py_VISIT(c->acc);
    Py_VISIT(c->collected);
    for (int i = 0; i < c->depth; i++) {
        Py_VISIT(c->stack[i].view);
        Py_VISIT(c->stack[i].cache);
        Py_VISIT(c->stack[i].child);
    }
    return 0;
}

static int Core_clear(Core *c) {
    Py_CLEAR(c->pieces);
    Py_CLEAR(c->replay);
    Py_CLEAR(c->python);
    Py_CLEAR(c->delegate);
    Py_CLEAR(c->verdict);
    Py_CLEAR(c->next);
    Py_CLEAR(c->acc);
    Py_CLEAR(c->collected);
    clear_stack(c);
    return 0;
}

static void Core_dealloc(Core *c) {
    PyObject_GC_UnTrack(c);
    Core_clear(c);
    Py_TYPE(c)->tp_free((PyObject *)c);
}

static PyObject *Core_get_python(Core *c, void *closure) {
    return Py_NewRef(c->python ? c->python : Py_None);
}

static PyObject *Core_get_done(Core *c, void *closure) {
    return PyBool_FromLong(c->delegate == NULL && c->state == S_DONE);
}

static PyObject *Core_get_root(Core *c, void *closure) {
    return Py_BuildValue("(nn)", c->root_start, c->root_end);
}

static PyObject *Core_get_pieces(Core *c, void *closure) {
    return Py_NewRef(c->pieces ? c->pieces : Py_None);
}

static PyMethodDef Core_methods[] = {
    {"feed", (PyCFunction)Core_feed, METH_O,
     "Read the next piece: None when certified, else the Python checker's verdict."},
    {"settle", (PyCFunction)Core_settle, METH_NOARGS,
     "True when the answer is surely valid without the full validation (False: no answer)."},
    {"finish_with", (PyCFunction)Core_finish_with, METH_O,
     "The stream is over with this verdict: every later feed returns it."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Core_getset[] = {
    {"python", (getter)Core_get_python, NULL, "The Python checker after a hand-over, or None.", NULL},
    {"done", (getter)Core_get_done, NULL, "The root value is complete (and certified).", NULL},
    {"root", (getter)Core_get_root, NULL, "(start, end) offsets of the root value.", NULL},
    {"pieces", (getter)Core_get_pieces, NULL, "The pieces fed so far (None after a hand-over).",
     NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject CoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "guardrail.incremental._certify.Certifier",
    .tp_basicsize = sizeof(Core),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Certifies pieces of a streamed answer; hands over to the Python checker when unsure.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Core_init,
    .tp_dealloc = (destructor)Core_dealloc,
    .tp_traverse = (traverseproc)Core_traverse,
    .tp_clear = (inquiry)Core_clear,
    .tp_methods = Core_methods,
    .tp_getset = Core_getset,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_certify", "The incremental checker's fast path (see _certify.c).", -1,
    NULL, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__certify(void) {
    init_tables();
    if (PyType_Ready(&CoreType) < 0) return NULL;
    str_fast = PyUnicode_InternFromString("fast");
    str_summary = PyUnicode_InternFromString("summary");
    str_children = PyUnicode_InternFromString("_children");
    str_items = PyUnicode_InternFromString("_items");
    str_child = PyUnicode_InternFromString("child");
    str_item = PyUnicode_InternFromString("item");
    str_feed = PyUnicode_InternFromString("feed");
    if (!str_fast || !str_summary || !str_children || !str_items || !str_child || !str_item ||
        !str_feed)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    Py_INCREF(&CoreType);
    if (PyModule_AddObject(m, "Certifier", (PyObject *)&CoreType) < 0) {
        Py_DECREF(&CoreType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
