"""Mapping files: a channel's records ↔ the canonical model, declared in YAML.

A mapping compiles each field to two chains of same-signature steps
(``value -> value``, raising ``MappingError``): one read chain (channel →
canonical) and one write chain (canonical → channel). Nothing in a mapping
file is evaluated as code. The format is documented in ``mappings/README.md``.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cache, cached_property, partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from connectors.base import SharedRow
from syncd import steps
from syncd.codes import load_code_tables
from syncd.errors import MappingError
from syncd.model import (
    CHILDREN,
    ITEM_FIELDS,
    FieldSpec,
    ServiceItem,
    attributes,
    child_memory,
    remembered,
)
from syncd.yaml_lines import LineDict, load_yaml, read_text

Step = Callable[[Any], Any]
RawRecord = dict[str, Any]

FIELD_KEYS = frozenset({"column", "const", "default", "steps", "split", "codes", "datetime",
                        "write"})
TOP_KEYS = frozenset({"channel", "description", "encoding", "table", "fields", "children",
                      "platform"})
CHILD_KEYS = frozenset({"table", "parent_key", "path", "order", "fields"})
REQUIRED = ("item_code", "item_name", "item_type", "dept_name", "status")


@dataclass(frozen=True, slots=True)
class FieldMap:
    """One canonical field ↔ one channel column, with its compiled chains."""

    name: str
    column: str | None
    read: tuple[Step, ...]
    write: tuple[Step, ...]
    const: Any = None
    line: int = 0
    writable: bool = True
    reader: Step = steps.compose(())  # ``read`` as one callable (``steps.fast_read``)
    writer: Step = steps.compose(())
    plain: bool = False  # read is just "text as it is": a non-empty str needs no steps


@dataclass(frozen=True, slots=True)
class ChildMap:
    """A child collection (materials, fees): a related table or a nested list."""

    name: str
    fields: tuple[FieldMap, ...]
    table: str | None = None
    parent_key: str | None = None
    path: str | None = None
    order: str | None = None

    @property
    def record_key(self) -> str:
        """Where the child rows sit inside a raw record."""
        return self.path or self.name


@dataclass(frozen=True)
class Mapping:
    """A compiled mapping file for one channel."""

    channel: str
    file: str
    fields: tuple[FieldMap, ...]
    children: tuple[ChildMap, ...]
    encoding: str = "utf-8"
    table: str | None = None
    cursor: str | None = None
    platform: dict[str, Any] = field(default_factory=dict)
    source_digest: str | None = None  # of the file text this mapping was compiled from

    @cached_property
    def key_field(self) -> FieldMap:
        """The field holding ``item_code`` (looked up once: every record reads it)."""
        return next(f for f in self.fields if f.name == "item_code")

    @property
    def key_column(self) -> str:
        """The channel column holding ``item_code``."""
        return self.key_field.column  # type: ignore[return-value]

    @property
    def columns(self) -> list[str]:
        """Main-record columns this mapping reads or writes, key first."""
        cols = [f.column for f in self.fields if f.column]
        return list(dict.fromkeys([self.key_column, *cols]))  # type: ignore[list-item]

    def item_code_of(self, record: RawRecord) -> str | None:
        """The record's item_code through its field's read chain alone (no other field is read).

        Raises:
            MappingError: the key column cannot be read.
        """
        fm = self.key_field
        code = fm.reader(record.get(fm.column))  # type: ignore[arg-type]
        return code if isinstance(code, str) else None

    @cached_property
    def _read_plans(self) -> tuple[ReadPlan, tuple[Step, ...]]:
        """The read plan of the record and a builder for each child collection, made once."""
        return (_read_plan(ServiceItem, self.fields, [c.name for c in self.children]),
                tuple(_child_builder(_read_plan(CHILDREN[c.name][0], c.fields))
                      for c in self.children))

    def to_item(self, record: RawRecord) -> ServiceItem:
        """Map one raw record to a canonical item.

        Raises:
            MappingError: naming the channel, item and field that failed.
        """
        item_code = None
        main_plan, builders = self._read_plans
        try:
            item = _read_object(main_plan, record)
            item_code = item.item_code
            for child, build in zip(self.children, builders, strict=True):
                _SET[child.name](item, _read_children(child, build, record))
            return item
        except MappingError as exc:
            raise exc.located(channel=self.channel,
                              item_code=item_code or self._raw_code(record)) from None

    def _raw_code(self, record: RawRecord) -> str | None:
        """The record's key as it stands, where its item_code was not read: errors name it."""
        raw_key = record.get(self.key_column)
        return raw_key if isinstance(raw_key, str) else None

    def values_reader(self, names: Sequence[str]
                      ) -> Callable[[RawRecord], tuple[str, list[Any]]]:
        """A function giving a record's (item_code, [value of each of ``names``]), the
        values :meth:`to_item` would give those fields (or child collections), without
        building the item.

        Reconcile's readers need only a digest of the compared fields of every record:
        building the item, to take those values back out of it, was a quarter of the
        cost of mapping and hashing a record. Only item_code and ``names`` are read
        (in the mapping's order, so a record fails with the error :meth:`to_item`
        raises for the first of them that fails): a field not asked for is not read,
        and a record whose only unreadable value is there reads without error. For
        reconcile that is metadata (version, update time), which it does not compare;
        reading the update time was 4 % of a reader's work.
        """
        main_plan, builders = self._read_plans
        defaults = {f.name: f.default for f in dataclasses.fields(ServiceItem)}
        unknown = [n for n in names if n not in defaults or n == "item_code"]
        if unknown:
            raise ValueError(f"not fields of an item besides item_code: {unknown}")
        at = {name: i for i, name in enumerate(names)}
        at["item_code"] = len(names)  # read into the last place, and popped
        # what an unmapped field holds (a mapped one is read over it)
        template = [defaults[n] for n in names] + [None]
        fields = tuple((name, column, reader, plain, at[name])
                       for name, column, reader, plain, _put in main_plan.fields if name in at)
        kids = tuple((at[child.name], child, build)
                     for child, build in zip(self.children, builders, strict=True)
                     if child.name in at)

        def read(record: RawRecord) -> tuple[str, list[Any]]:
            values = template.copy()
            get = record.get
            name = None
            try:
                for name, column, reader, plain, i in fields:
                    value = get(column)
                    values[i] = (value if plain and (value is None or value.__class__ is str
                                                     and value) else reader(value))
            except MappingError as exc:
                raise exc.located(field=name, channel=self.channel,
                                  item_code=self._raw_code(record)) from None
            code = values.pop()
            try:
                for i, child, build in kids:
                    values[i] = _read_children(child, build, record)
            except MappingError as exc:
                raise exc.located(channel=self.channel,
                                  item_code=code or self._raw_code(record)) from None
            return code, values

        return read

    @cached_property
    def _write_plans(self) -> tuple[WritePlan, tuple[Callable[[Any], RawRecord], ...]]:
        """The write plan of the record and, for each child collection, its rows' writer
        (remembered per child: the same children recur on item after item)."""
        return _write_plan(self.fields), tuple(
            remembered(partial(_write_fields, _write_plan(c.fields))) for c in self.children)

    def from_item(self, item: ServiceItem) -> RawRecord:
        """Map a canonical item to a raw record of this channel (children nested).

        Raises:
            MappingError: a value this channel cannot represent (e.g. a code with no entry).
        """
        main_plan, child_writers = self._write_plans
        try:
            record = _write_fields(main_plan, item)
            for child, write in zip(self.children, child_writers, strict=True):
                rows = []
                for i, obj in enumerate(getattr(item, child.name)):
                    try:
                        row = dict(write(obj))
                    except MappingError as exc:
                        raise exc.within(f"{child.name}[{i}]")
                    if child.parent_key:
                        row[child.parent_key] = item.item_code
                    if child.order and row.get(child.order) is None:
                        row[child.order] = i + 1
                    rows.append(row)
                record[child.record_key] = rows
            return record
        except MappingError as exc:
            raise exc.located(channel=self.channel, item_code=item.item_code) from None


@dataclass(frozen=True, slots=True)
class ReadPlan:
    """How one canonical class is read from a record, made once per mapping.

    The object is built by setting its slots directly (``object.__new__`` and each
    slot's descriptor), not through the frozen dataclass's ``__init__``, which
    costs more than reading the record itself: a reader builds one item and its
    children for every record it streams. Every field is set, from the record or
    from the class's default, so the object equals the one ``cls(**values)`` makes.
    """

    cls: type
    #: (name, column, reader, plain, set) per mapped field
    fields: tuple[tuple[str, Any, Step, bool, Callable[[Any, Any], None]], ...]
    defaults: tuple[tuple[Callable[[Any, Any], None], Any], ...]  # (set, value) of the rest


def _read_plan(cls: type, fields: Sequence[FieldMap], later: Sequence[str] = ()) -> ReadPlan:
    """The plan reading ``fields`` into ``cls``; the fields named in ``later`` (an
    item's children) are left to the caller. A constant reads through its chain each
    time, as a column value would.

    Raises:
        ValueError: a field of ``cls`` without a default is not mapped.
    """
    setters = _slot_setters(cls)
    mapped = tuple((fm.name, fm.column, fm.reader, fm.plain, setters[fm.name])
                   if fm.column is not None
                   else (fm.name, _CONST, lambda _none, fm=fm: fm.reader(fm.const), False,
                         setters[fm.name])
                   for fm in fields)
    names = {fm.name for fm in fields} | set(later)
    defaults = []
    for f in dataclasses.fields(cls):
        if f.name in names:
            continue
        if f.default is dataclasses.MISSING:
            raise ValueError(f"{cls.__name__}.{f.name} has no default and is not mapped")
        defaults.append((setters[f.name], f.default))
    return ReadPlan(cls, mapped, tuple(defaults))


@cache
def _slot_setters(cls: type) -> dict[str, Callable[[Any, Any], None]]:
    """Each field's slot descriptor ``__set__``, which a frozen class's ``__setattr__``
    does not stand in the way of (its own ``__init__`` sets fields the same way)."""
    return {f.name: getattr(cls, f.name).__set__ for f in dataclasses.fields(cls)}


_SET = _slot_setters(ServiceItem)  # an item's children are set once they are read
_CONST = object()  # the "column" of a constant: no record has it, so it reads as None


def _read_object(plan: ReadPlan, record: RawRecord) -> Any:
    obj = object.__new__(plan.cls)
    get = record.get
    name = None
    try:
        for name, column, reader, plain, put in plan.fields:
            value = get(column)
            # most columns of most channels are plain text: skip the call (same result)
            put(obj, value if plain and (value is None or value.__class__ is str and value)
                else reader(value))
    except MappingError as exc:
        raise exc.located(field=name) from None
    for put, value in plan.defaults:
        put(obj, value)
    return obj


def _read_children(child: ChildMap, build: Step, record: RawRecord) -> tuple[Any, ...]:
    """The child collection ``child`` of ``record``, each row built by ``build``."""
    rows = record.get(child.record_key) or []
    if child.order:
        rows = sorted(rows, key=lambda r: (r.get(child.order) is None, r.get(child.order)))
    built = []
    for i, row in enumerate(rows):
        try:
            built.append(build(row))
        except MappingError as exc:
            raise exc.within(f"{child.name}[{i}]")
    return tuple(built)


def _child_builder(plan: ReadPlan) -> Step:
    """A child row → its canonical object, remembered by the row's values.

    The same materials (身份证, 营业执照 … with the same basis) recur on item after
    item; a remembered row is not read again, and as the very same object it is
    validated, hashed and written from memory too (``model.remembered``). A row
    is remembered by its values and their types (``1`` and ``True`` read
    differently); one holding an unhashable value (a list in a JSON record) is read
    each time. A row that fails to read raises each time and is not remembered.
    A connector's :class:`~connectors.base.SharedRow` is one object for all rows of
    the same values: it is known by its identity, without looking at its values.
    """
    columns = tuple(column for _name, column, _reader, _plain, _set in plan.fields)
    memory: dict[tuple[Any, ...], Any] = {}

    def by_values(row: RawRecord) -> Any:
        values = tuple(map(row.get, columns))
        key = (values, tuple(map(type, values)))
        try:
            return memory[key]
        except KeyError:
            pass
        except TypeError:
            return _read_object(plan, row)
        obj = _read_object(plan, row)
        if len(memory) >= child_memory():
            memory.clear()
        memory[key] = obj
        return obj

    by_identity = remembered(by_values)

    def build(row: RawRecord) -> Any:
        return by_identity(row) if row.__class__ is SharedRow else by_values(row)

    return build


@dataclass(frozen=True, slots=True)
class WritePlan:
    """The written fields of one class: their values taken in one ``attrgetter`` call,
    and only the fields with a write chain (codes, times, lists) passed through it."""

    columns: tuple[str, ...]
    values: Callable[[Any], tuple[Any, ...]]
    chains: tuple[tuple[int, str, str, Step], ...]  # (position, name, column, writer)


def _write_plan(fields: Sequence[FieldMap]) -> WritePlan:
    written = [fm for fm in fields if fm.column is not None and fm.writable]
    return WritePlan(tuple(fm.column for fm in written),  # type: ignore[misc]
                     attributes([fm.name for fm in written]),
                     tuple((i, fm.name, fm.column, fm.writer)  # type: ignore[misc]
                           for i, fm in enumerate(written) if fm.write))


def _write_fields(plan: WritePlan, obj: Any) -> RawRecord:
    values = plan.values(obj)
    record: RawRecord = dict(zip(plan.columns, values, strict=True))
    name = None
    try:
        for i, name, column, writer in plan.chains:
            record[column] = writer(values[i])
    except MappingError as exc:
        raise exc.located(field=name) from None
    return record


# --- compiling a file ---------------------------------------------------------

class _Compiler:
    """Turns one parsed mapping file into a :class:`Mapping`, failing at the exact line."""

    def __init__(self, path: Path, doc: LineDict) -> None:
        self.path, self.doc = path, doc
        self.tables = load_code_tables()
        self.encoding = str(doc.get("encoding", "utf-8"))

    def fail(self, message: str, where: LineDict, key: str, field: str | None = None) -> MappingError:
        return MappingError(message, file=str(self.path), line=where.line_of(key), field=field)

    def compile(self) -> Mapping:
        doc = self.doc
        self._only(doc, TOP_KEYS, "top level")
        if not isinstance(doc.get("channel"), str):
            raise self.fail("'channel' (the channel's name) is required", doc, "channel")
        try:
            "".encode(self.encoding)
        except LookupError:
            raise self.fail(f"unknown encoding {self.encoding!r}", doc, "encoding") from None
        fields = self._fields(doc, "fields", ITEM_FIELDS)
        mapped = {f.name for f in fields}
        for name in REQUIRED:
            if name not in mapped:
                raise self.fail(f"required canonical field {name!r} is not mapped", doc, "fields",
                                field=name)
        if next(f for f in fields if f.name == "item_code").column is None:
            raise self.fail("item_code must come from a column", doc, "fields", field="item_code")
        table = doc.get("table") or LineDict()
        if not isinstance(table, LineDict):
            raise self.fail("'table' must be a mapping with name and optional cursor", doc, "table")
        self._only(table, frozenset({"name", "cursor"}), "table")
        platform = doc.get("platform") or {}
        if not isinstance(platform, dict):
            raise self.fail("'platform' must be a mapping", doc, "platform")
        return Mapping(channel=doc["channel"], file=str(self.path), fields=fields,
                       children=self._children(doc), encoding=self.encoding,
                       table=table.get("name"), cursor=table.get("cursor"),
                       platform=dict(platform))

    def _only(self, section: LineDict, allowed: frozenset[str], what: str,
              field: str | None = None) -> None:
        for key in section:
            if key not in allowed:
                raise self.fail(f"unknown key {key!r} in {what} (allowed: "
                                f"{', '.join(sorted(allowed))})", section, key, field)

    def _fields(self, parent: LineDict, key: str, specs: dict[str, FieldSpec]) -> tuple[FieldMap, ...]:
        section = parent.get(key)
        if not isinstance(section, LineDict) or not section:
            raise self.fail(f"'{key}' must map canonical fields to columns", parent, key)
        out = []
        for name, body in section.items():
            if name not in specs:
                raise self.fail(f"unknown canonical field {name!r} (known: "
                                f"{', '.join(specs)})", section, name, field=name)
            if isinstance(body, str):  # shorthand: `item_name: SXMC`
                body = LineDict(column=body)
                body.line, body.lines = section.line_of(name), {}
            if not isinstance(body, LineDict):
                raise self.fail("expected a column name or a mapping", section, name, field=name)
            out.append(self._field(specs[name], body))
            written = [f for f in out if f.column == out[-1].column and f.writable]
            if out[-1].column is not None and len(written) > 1:
                raise self.fail(f"column {out[-1].column!r} is written by both {written[0].name!r} "
                                f"and {name!r}; give one of them 'write: false'", section, name,
                                field=name)
        return tuple(out)

    def _field(self, spec: FieldSpec, body: LineDict) -> FieldMap:
        name = spec.name
        self._only(body, FIELD_KEYS, f"field {name!r}", name)
        column = body.get("column")
        if column is not None and not isinstance(column, str):
            raise self.fail("'column' must be a column name", body, "column", field=name)
        if column is None and "const" not in body:
            raise self.fail("needs 'column' or 'const'", body, "column", field=name)
        try:
            read, reader, write = self._chains(spec, body)
        except MappingError as exc:
            raise exc.located(file=str(self.path), field=name) from None
        return FieldMap(name=name, column=column, read=read, write=write,
                        const=body.get("const"), line=body.line,
                        writable=bool(body.get("write", True)),
                        reader=reader, writer=steps.compose(write),
                        plain=len(read) == 2 and read[1] is steps.to_text)

    def _chains(self, spec: FieldSpec,
                body: LineDict) -> tuple[tuple[Step, ...], Step, tuple[Step, ...]]:
        """(read chain, its reader, write chain) of one field."""
        read: list[Step] = [steps.decode(self.encoding)]
        write: list[Step] = []
        for step_name in body.get("steps") or []:
            if step_name not in steps.TEXT_STEPS:
                raise self.fail(f"unknown step {step_name!r} (known: "
                                f"{', '.join(steps.TEXT_STEPS)})", body, "steps", spec.name)
            read.append(steps.TEXT_STEPS[step_name])
        text_fns = [step.text_fn for step in read[1:]]  # type: ignore[attr-defined]
        if len(read) > 1:  # a text step may leave an empty string behind
            read.append(steps.empty_to_none)
        if (sep := body.get("split")) is not None:
            if spec.kind != "codes":
                raise self.fail("'split' is only for list fields", body, "split", spec.name)
            read.append(steps.split(str(sep)))
        codes = body.get("codes")
        if codes is not None:
            if not isinstance(codes, dict) or not codes:
                raise self.fail("'codes' must map channel values to national codes", body,
                                "codes", spec.name)
            table = self._check_codes(spec, body, codes)
            forward = {str(k): v for k, v in codes.items()}
            read.append(steps.lookup(forward, table, many=spec.kind == "codes"))
        read.append(self._coerce(spec, body))
        if "default" in body:
            read.append(steps.default(body["default"]))
        # write chain: canonical → channel, reverse order
        if spec.kind == "datetime":
            write.append(self._datetime_out(body))
        if codes is not None:
            reverse: dict[Any, Any] = {}
            for k, v in codes.items():
                reverse.setdefault(v, k)  # the first listed channel value wins
            write.append(steps.lookup(reverse, f"{self.doc['channel']}:{spec.name}",
                                      many=spec.kind == "codes"))
        if spec.kind == "codes":
            write.append(steps.join(str(sep)) if sep is not None else steps.as_list)
        # the shortcut may look codes up only when they need no coercion afterwards
        typed = bool if spec.kind == "bool" else str
        shortcut_table = forward if codes is not None and all(
            type(v) is typed for v in forward.values()) else None
        if codes is not None and shortcut_table is None:
            reader = steps.compose(read)
        else:
            reader = steps.fast_read(steps.compose(read), text=steps.text_chain(text_fns),
                                     kind=spec.kind, table=shortcut_table,
                                     sep=None if sep is None else str(sep),
                                     zone=self._zone(body) if spec.kind == "datetime" else None)
        return tuple(read), reader, tuple(write)

    def _check_codes(self, spec: FieldSpec, body: LineDict, codes: dict[str, Any]) -> str:
        if spec.kind == "bool":
            bad = [v for v in codes.values() if not isinstance(v, bool)]
            if bad:
                raise self.fail(f"codes of a yes/no field must map to true/false, got {bad[0]!r}",
                                body, "codes", spec.name)
            return "yes/no"
        if spec.kind not in ("code", "codes"):
            raise self.fail(f"'codes' is not allowed on a {spec.kind} field", body, "codes",
                            spec.name)
        known = self.tables[spec.table or ""]
        for value in codes.values():
            if str(value) not in known:
                raise self.fail(f"{value!r} is not a national code of table {spec.table} "
                                f"(known: {', '.join(known)})", body, "codes", spec.name)
        return spec.table or ""

    def _coerce(self, spec: FieldSpec, body: LineDict) -> Step:
        if spec.kind == "datetime":
            return steps.to_datetime(self._zone(body), self._dt_format(body))
        return steps.COERCE[spec.kind]

    def _zone(self, body: LineDict) -> ZoneInfo:
        opts = body.get("datetime") or {}
        try:
            return ZoneInfo(str(opts.get("tz", "UTC")))
        except (ZoneInfoNotFoundError, ValueError):
            raise self.fail(f"unknown time zone {opts.get('tz')!r}", body, "datetime") from None

    def _dt_format(self, body: LineDict) -> str | None:
        opts = body.get("datetime") or {}
        if not isinstance(opts, dict):
            raise self.fail("'datetime' takes {tz, format}", body, "datetime")
        fmt = opts.get("format")
        if fmt is not None and fmt != "iso":
            try:
                datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC).strftime(str(fmt))
            except ValueError:
                raise self.fail(f"bad datetime format {fmt!r}", body, "datetime") from None
        return None if fmt is None else str(fmt)

    def _datetime_out(self, body: LineDict) -> Step:
        return steps.from_datetime(self._zone(body), self._dt_format(body))

    def _children(self, doc: LineDict) -> tuple[ChildMap, ...]:
        section = doc.get("children") or LineDict()
        if not isinstance(section, LineDict):
            raise self.fail("'children' must be a mapping", doc, "children")
        out = []
        for name, body in section.items():
            if name not in CHILDREN:
                raise self.fail(f"unknown child collection {name!r} (known: "
                                f"{', '.join(CHILDREN)})", section, name)
            if not isinstance(body, LineDict):
                raise self.fail("expected a mapping", section, name)
            self._only(body, CHILD_KEYS, f"children.{name}")
            if bool(body.get("table")) == bool(body.get("path")):
                raise self.fail("give either 'table' (with 'parent_key') or 'path'", body, "table")
            if body.get("table") and not body.get("parent_key"):
                raise self.fail("a child table needs 'parent_key'", body, "table")
            specs = CHILDREN[name][1]
            fields = self._fields(body, "fields", specs)
            for req in (s.name for s in specs.values() if s.required):
                if req not in {f.name for f in fields}:
                    raise self.fail(f"required field {req!r} is not mapped", body, "fields", req)
            out.append(ChildMap(name=name, fields=fields, table=body.get("table"),
                                parent_key=body.get("parent_key"), path=body.get("path"),
                                order=body.get("order")))
        return tuple(out)


def load_mapping(path: Path) -> Mapping:
    """Load and compile one mapping file.

    Raises:
        MappingError: naming the file, line and field at fault.
    """
    text = read_text(path)
    mapping = _Compiler(path, load_yaml(path, text=text)).compile()
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()
    return replace(mapping, source_digest=digest)


def mapping_files(directory: Path) -> list[Path]:
    """Every channel mapping under ``directory`` (code tables excluded)."""
    return sorted(p for p in directory.rglob("*.yaml") if p.name != "codes.yaml")
