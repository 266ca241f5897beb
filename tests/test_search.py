"""Full-text search of page texts on SQLite FTS5 and PostgreSQL: Chinese names, ID numbers, dates, filters,
permissions, snippets, hostile queries, index upkeep and paging."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session

from scanner_service.archive.db import migrate, session_scope
from scanner_service.archive.models import Batch, BatchState, Fonds, Item, SearchEntry
from scanner_service.archive.search import BadQuery, SearchResult, new_entry, search, snippet, terms_of

# Pages as OCR gives them: line breaks, the odd space between characters, full-width digits and punctuation.
MINUTES_1 = """东山村村民代表大会会议记录
时间：2013-05-01上午九时　地点：村委会会议室
主持人：王强（村委会主任）　记录人：李秀英
参加人员：张建国、刘桂兰、陈志明、赵德胜等二十一人
议题：一、讨论第三村民小组土地调整方案；二、通报2012年度村级财务收支情况。"""

MINUTES_2 = """王主任说明：经村两委研究，调整面积共计12.5亩，涉及农户8户。
陈志明提出：河滩地应按实测面积承包，不能按原台账。
表决结果：同意19人，反对1人，弃权1人。会议于十一时三十分结束。"""

CONTRACT_1 = """农村土地承包经营权登记簿
发包方：东山村第三村民小组
承包方代表：王强　身份证号：11010519491231002X
承包地块：东坡地3块，合计4.2亩（GPS实测）
承包期限：1998年10月1日至2028年9月30日
合同编号：DS-1998-037"""

CONTRACT_2 = """承包方家庭成员：王强（户主）、孙玉芬（配偶）、王小明（长子）
地块四至：东至李家沟，西至村道，南至张建国承包地，北至山脚。
备注：1998年第二轮延包，面积以实测为准。"""

PENSION = """2013年度城乡居民基本养老保险待遇发放名册
序号　姓名　身份证号　月发放金额（元）
1　刘桂兰　110105195203150027　85.00
2　赵德胜　11010519500712003X　85.00
3　欧阳春华　110105194810080041　95.00
4　孙玉芬　110105195105200024　85.00"""

# Only here: 王 closes one line and 强 opens another, other text between; 欧阳 and 春华 likewise.
SAFETY = """关于加强汛期安全工作的通知
各村民小组：防汛物资由村委会委员王
建华负责保管，水闸钥匙由欧阳
明保管。
强化值班制度，春华路段设警示牌。
东山村村民委员会　二〇一三年六月三日"""

# A stamp with English, and text that looks like HTML.
STAMP = """东山村村民委员会　Land and Resources Bureau
附：地块面积<5亩 & 坡度>25°的地块退耕还林"""

# The other village also has a 王强; its page is a confidential item (密级).
WEST_CONFIDENTIAL = """西河村治安调解记录（内部）
当事人：王强、周海
调解人：村调解委员会
日期：2015年3月12日"""

WEST_OPEN = """西河村2015年度村务公开栏
低保户名单：周海、吴桂香
公开日期：2015年1月5日"""

# A batch not filed yet; this OCR engine put spaces between the characters and broke the line inside the name.
BATCH_PAGE = """东 山 村 2014 年 度 低 保 复 核 表
申 请 人 ： 王
强　　家 庭 人 口 ： 3
复 核 意 见 ： 同 意"""

BATCH_PAGE_2 = """东山村2014年度低保复核表（续）
申请人：刘桂兰　家庭人口：1
复核意见：同意"""


@dataclass
class Catalogue:
    url: str
    items: dict[str, int]  # short name → item id
    entries: dict[str, int]  # page name → search entry id
    batch_id: int


def _item(session: Session, fonds: str, category: str, year: int, no: int, **extra: object) -> Item:
    code = f"{fonds}-{category}·{year}-Y-{no:04d}"
    item = Item(
        code_key=code,
        archival_code=code,
        fonds=fonds,
        category=category,
        year=year,
        retention="Y",
        item_no=no,
        folder=f"{fonds}/{category}/{year}/{code}",
        **extra,
    )
    session.add(item)
    session.flush()
    return item


@pytest.fixture
def catalogue(catalogue_url: str) -> Catalogue:
    """Two villages' fonds with items and their pages, and a batch with pages not filed yet."""
    migrate(catalogue_url)
    with session_scope(catalogue_url) as session:
        session.add_all([Fonds(code="C015", name="东山村"), Fonds(code="C022", name="西河村")])
        session.flush()
        minutes = _item(session, "C015", "WS", 2013, 1, title="村民代表大会会议记录")
        contract = _item(session, "C015", "TD", 1998, 37, title="土地承包经营权登记簿")
        pension = _item(session, "C015", "KJ", 2013, 5, title="养老保险待遇发放名册")
        safety = _item(session, "C015", "WS", 2013, 9, title="汛期安全工作通知")
        stamp = _item(session, "C015", "WS", 2013, 12, title="退耕还林附表")
        west_secret = _item(session, "C022", "WS", 2015, 3, classification="秘密", title="治安调解记录")
        west_open = _item(session, "C022", "WS", 2015, 1, title="村务公开")
        batch = Batch(name="东山村2014低保复核", state=BatchState.needs_review, source="/inbox/x")
        session.add(batch)
        session.flush()
        pages: dict[str, SearchEntry] = {}
        for name, text_, item, page_no in [
            ("minutes_1", MINUTES_1, minutes, 1),
            ("minutes_2", MINUTES_2, minutes, 2),
            ("contract_1", CONTRACT_1, contract, 1),
            ("contract_2", CONTRACT_2, contract, 2),
            ("pension", PENSION, pension, 1),
            ("safety", SAFETY, safety, 1),
            ("stamp", STAMP, stamp, 1),
            ("west_secret", WEST_CONFIDENTIAL, west_secret, 1),
            ("west_open", WEST_OPEN, west_open, 1),
        ]:
            pages[name] = new_entry(
                text_, page_no=page_no, item_id=item.id, fonds=item.fonds, category=item.category, year=item.year
            )
        pages["batch_1"] = new_entry(BATCH_PAGE, page_no=1, batch_id=batch.id, fonds="C015", year=2014)
        pages["batch_2"] = new_entry(BATCH_PAGE_2, page_no=2, batch_id=batch.id, fonds="C015", year=2014)
        session.add_all(pages.values())
        session.flush()
        return Catalogue(
            url=catalogue_url,
            items={
                "minutes": minutes.id,
                "contract": contract.id,
                "pension": pension.id,
                "safety": safety.id,
                "stamp": stamp.id,
                "west_secret": west_secret.id,
                "west_open": west_open.id,
            },
            entries={name: entry.id for name, entry in pages.items()},
            batch_id=batch.id,
        )


def _find(cat: Catalogue, query: str, **kwargs: object) -> SearchResult:
    with session_scope(cat.url) as session:
        return search(session, query, **kwargs)  # type: ignore[arg-type]


def _pages(cat: Catalogue, result: SearchResult) -> set[str]:
    names = {entry_id: name for name, entry_id in cat.entries.items()}
    return {names[hit.entry_id] for hit in result.hits}


def test_a_two_character_name_is_found_on_its_pages_and_items(catalogue: Catalogue) -> None:
    result = _find(catalogue, "王强")
    # Not the safety notice, where 王 ends one line and 强 (of 强化) starts another, nor 王主任 or 王小明.
    assert _pages(catalogue, result) == {"minutes_1", "contract_1", "contract_2", "west_secret", "batch_1"}
    assert result.total == 5
    hit = next(h for h in result.hits if h.entry_id == catalogue.entries["contract_1"])
    assert (hit.item_id, hit.page_no, hit.fonds, hit.category, hit.year) == (
        catalogue.items["contract"],
        1,
        "C015",
        "TD",
        1998,
    )


def test_a_name_split_across_lines_with_text_between_is_no_hit(catalogue: Catalogue) -> None:
    # Both characters of each are on the safety notice, but never next to each other.
    assert _pages(catalogue, _find(catalogue, "欧阳春华")) == {"pension"}
    assert _pages(catalogue, _find(catalogue, "王建华")) == {"safety"}  # across a line break: found
    assert _pages(catalogue, _find(catalogue, "王强化")) == set()


def test_three_and_one_character_queries(catalogue: Catalogue) -> None:
    assert _pages(catalogue, _find(catalogue, "孙玉芬")) == {"contract_2", "pension"}
    assert _pages(catalogue, _find(catalogue, "闸")) == {"safety"}
    assert _pages(catalogue, _find(catalogue, "〇")) == {"safety"}  # 二〇一三年


def test_latin_words_match_whatever_their_case_or_width(catalogue: Catalogue) -> None:
    assert _pages(catalogue, _find(catalogue, "gps")) == {"contract_1"}
    assert _pages(catalogue, _find(catalogue, "ＧＰＳ")) == {"contract_1"}
    assert _pages(catalogue, _find(catalogue, "RESOURCES bureau")) == {"stamp"}


def test_an_id_number_is_found_with_either_x_and_in_full_width(catalogue: Catalogue) -> None:
    for query in ("11010519491231002X", "11010519491231002x", "１１０１０５１９４９１２３１００２Ｘ"):
        assert _pages(catalogue, _find(catalogue, query)) == {"contract_1"}, query
    assert _pages(catalogue, _find(catalogue, "11010519500712003X")) == {"pension"}
    assert _find(catalogue, "110105194912310").total == 0  # a word matches whole, not its beginning


def test_dates_and_numbers(catalogue: Catalogue) -> None:
    assert _pages(catalogue, _find(catalogue, "2013-05-01")) == {"minutes_1"}
    assert _pages(catalogue, _find(catalogue, "1998年10月1日")) == {"contract_1"}
    assert _pages(catalogue, _find(catalogue, "2015年3月12日")) == {"west_secret"}
    assert _pages(catalogue, _find(catalogue, "DS-1998-037")) == {"contract_1"}
    assert _pages(catalogue, _find(catalogue, "12.5亩")) == {"minutes_2"}


def test_every_part_of_the_query_must_match(catalogue: Catalogue) -> None:
    assert _pages(catalogue, _find(catalogue, "王强 1998")) == {"contract_1", "contract_2"}
    assert _pages(catalogue, _find(catalogue, "王强　身份证号")) == {"contract_1"}  # ideographic space
    assert _find(catalogue, "王强 欧阳春华").total == 0


def test_filters_by_fonds_category_and_year(catalogue: Catalogue) -> None:
    assert _pages(catalogue, _find(catalogue, "王强", fonds="C022")) == {"west_secret"}
    assert _pages(catalogue, _find(catalogue, "王强", fonds="C015", category="TD")) == {"contract_1", "contract_2"}
    assert _pages(catalogue, _find(catalogue, "王强", year=2013)) == {"minutes_1"}
    assert _pages(catalogue, _find(catalogue, "王强", year=2014)) == {"batch_1"}
    assert _find(catalogue, "王强", fonds="C999").total == 0


def test_the_callers_condition_hides_entries_and_batch_pages_come_with_their_batch(catalogue: Catalogue) -> None:
    open_only = Item.classification.is_(None)
    result = _find(catalogue, "王强", where=open_only)
    assert "west_secret" not in _pages(catalogue, result) and result.total == 4
    batch_hit = next(h for h in result.hits if h.entry_id == catalogue.entries["batch_1"])
    assert (batch_hit.item_id, batch_hit.batch_id, batch_hit.page_no) == (None, catalogue.batch_id, 1)
    # A reader limited to the items of one fonds (and nothing unfiled) sees only those.
    result = _find(catalogue, "王强", where=(Item.fonds == "C022") & (SearchEntry.item_id.is_not(None)))
    assert _pages(catalogue, result) == {"west_secret"}


def test_snippet_marks_the_match_in_the_original_text(catalogue: Catalogue) -> None:
    hits = {hit.entry_id: hit.snippet for hit in _find(catalogue, "王强").hits}
    assert "<mark>王强</mark>（户主）" in hits[catalogue.entries["contract_2"]]
    # Spaces and a line break inside the name, as the OCR gave them: still marked, shown without them.
    assert "申请人：<mark>王强</mark>" in hits[catalogue.entries["batch_1"]]
    assert snippet(STAMP, "bureau").startswith("东山村村民委员会 Land and Resources <mark>Bureau</mark>")
    assert "面积&lt;5亩 &amp; <mark>坡度</mark>&gt;25°的地块" in snippet(STAMP, "坡度")


def test_snippet_is_cut_around_the_first_match() -> None:
    long_text = "村" * 100 + "王强" + "组" * 100 + "王强"
    piece = snippet(long_text, "王强", width=10)
    assert piece == "…" + "村" * 10 + "<mark>王强</mark>" + "组" * 10 + "…"
    # Every part of the query is marked; no match shows the beginning.
    assert snippet(CONTRACT_1, "王强 11010519491231002x").count("<mark>") == 2
    assert snippet("<b>东山村</b>", "西河村") == "&lt;b&gt;东山村&lt;/b&gt;"
    assert snippet("", "王强") == ""


@pytest.mark.parametrize(
    "query",
    [
        '"',
        '王"强',
        "王''强",
        "'; DROP TABLE search_entries; --",
        "*",
        "王*",
        "AND",
        "OR",
        "NOT",
        "王 OR 强",
        "王 NOT 强",
        "NEAR(王 强)",
        "NEAR",
        "-王强",
        "terms:王强",
        "search_fts:王强",
        "(王强",
        "王强)",
        "^王强",
        "{terms}:王强",
        "王强 + 1998",
        "\\",
        "%",
        "_",
        "王\x00强",
        "a & b | !c <-> d:*",
    ],
)
def test_query_syntax_is_plain_text(catalogue: Catalogue, query: str) -> None:
    try:
        result = _find(catalogue, query)
    except BadQuery:
        return  # nothing searchable in it: a message for a person, not a database error
    assert result.total == len(result.hits)
    with session_scope(catalogue.url) as session:  # and nothing was dropped or changed
        assert session.scalar(select(SearchEntry.id).where(SearchEntry.id == catalogue.entries["minutes_1"]))


def test_operators_are_searched_as_words(catalogue: Catalogue) -> None:
    assert _pages(catalogue, _find(catalogue, "AND")) == {"stamp"}
    assert _pages(catalogue, _find(catalogue, "land AND")) == {"stamp"}
    assert _find(catalogue, "OR").total == 0 and _find(catalogue, "NOT").total == 0
    assert _pages(catalogue, _find(catalogue, '"王强"')) == _pages(catalogue, _find(catalogue, "王强"))
    assert _pages(catalogue, _find(catalogue, "王强*")) == _pages(catalogue, _find(catalogue, "王强"))
    assert _pages(catalogue, _find(catalogue, "-王强")) == _pages(catalogue, _find(catalogue, "王强"))


@pytest.mark.parametrize("query", ["", "   ", "，。、；：", "--- !!! ***", "\u3000"])
def test_nothing_to_search_for_is_a_bad_query(catalogue: Catalogue, query: str) -> None:
    with pytest.raises(BadQuery) as error:
        _find(catalogue, query)
    assert error.value.code == "bad_query" and error.value.http_status == 422
    assert "Nothing to search for" in str(error.value)


def test_an_overlong_query_is_a_bad_query(catalogue: Catalogue) -> None:
    with pytest.raises(BadQuery, match="too long"):
        _find(catalogue, "王强" * 101)
    assert _find(catalogue, "王强" * 100).total == 0  # 200 characters is still allowed


def test_deleting_or_changing_an_entry_updates_the_index(catalogue: Catalogue) -> None:
    with session_scope(catalogue.url) as session:
        session.execute(delete(SearchEntry).where(SearchEntry.id == catalogue.entries["contract_2"]))
    assert "contract_2" not in _pages(catalogue, _find(catalogue, "王强"))
    assert _find(catalogue, "李家沟").total == 0

    with session_scope(catalogue.url) as session:  # an OCR correction: 王强 was really 汪强
        entry = session.get(SearchEntry, catalogue.entries["contract_1"])
        assert entry is not None
        entry.text = CONTRACT_1.replace("王强", "汪强")
        entry.terms = terms_of(entry.text)
    assert _pages(catalogue, _find(catalogue, "王强")) == {"minutes_1", "west_secret", "batch_1"}
    assert _pages(catalogue, _find(catalogue, "汪强")) == {"contract_1"}

    with session_scope(catalogue.url) as session:  # an item removed takes its entries with it
        session.execute(delete(Item).where(Item.id == catalogue.items["west_secret"]))
    assert _pages(catalogue, _find(catalogue, "王强")) == {"minutes_1", "batch_1"}


def test_total_and_paging(catalogue: Catalogue) -> None:
    everything = _find(catalogue, "村", limit=100)
    assert everything.total == len(everything.hits) == 10
    seen: list[int] = []
    for offset in range(0, 12, 4):
        page = _find(catalogue, "村", limit=4, offset=offset)
        assert page.total == 10
        seen += [hit.entry_id for hit in page.hits]
    assert seen == [hit.entry_id for hit in everything.hits]  # a stable order: no page repeats or skips
    assert _find(catalogue, "村", limit=4, offset=100).hits == []
    assert _find(catalogue, "村", limit=0).hits == [] and _find(catalogue, "村", limit=0).total == 10


def test_the_more_a_page_is_about_it_the_higher_it_ranks(catalogue: Catalogue) -> None:
    with session_scope(catalogue.url) as session:
        session.add(
            new_entry("孙玉芬。" * 3 + "孙玉芬户承包地块调整申请，孙玉芬签字。", page_no=3, batch_id=catalogue.batch_id)
        )
    hits = _find(catalogue, "孙玉芬").hits
    assert hits[0].batch_id == catalogue.batch_id and hits[0].page_no == 3
    assert len(hits) == 3


def test_terms_are_what_both_engines_read(catalogue: Catalogue) -> None:
    """The engines tokenise the stored terms exactly as terms_of split them: one token in, one token out, in
    order; so a query phrase and a page's terms line up on SQLite and PostgreSQL alike."""
    samples = [
        MINUTES_1,
        CONTRACT_1,
        PENSION,
        SAFETY,
        STAMP,
        BATCH_PAGE,
        "C015-WS·2013-Y-BGS-0001 no.3 3.5亩 a@b.com http://x.com/a 1e5 12:30 5/1 1,000 −5 x_y",
        "二〇一三年 Ⅻ ① ½ İstanbul café STRASSE straße ÉCOLE ｶﾀｶﾅ 한국어 𠀀𪜀 Привет",
        "ＡＢＣ１２３ abc123 DS-1998-037 11010519491231002X",
    ]
    with session_scope(catalogue.url) as session:
        engine = session.get_bind().dialect.name
        if engine == "sqlite":
            session.execute(text("CREATE VIRTUAL TABLE temp.fts_words USING fts5vocab(main, search_fts, instance)"))
        for sample in samples:
            terms = terms_of(sample)
            if engine == "sqlite":
                entry = new_entry(sample, page_no=99, batch_id=catalogue.batch_id)
                session.add(entry)
                session.flush()
                rows = session.execute(
                    text('SELECT term FROM temp.fts_words WHERE doc = :id ORDER BY "offset"'), {"id": entry.id}
                )
            else:
                rows = session.execute(
                    text(
                        "SELECT w.lexeme FROM unnest(to_tsvector('simple', :terms)) AS w, unnest(w.positions) AS p "
                        "ORDER BY p"
                    ),
                    {"terms": terms},
                )
            assert [row[0] for row in rows] == terms.split(), sample
    assert terms_of("ＡＢＣ１２３") == "abc123"
    assert terms_of("申 请 人 ： 王\n强") == terms_of("申请人：王强") == "申 请 人 王 强"
    assert terms_of("2013-05-01") == "2013 05 01"


def test_equally_good_pages_come_in_item_and_page_order(catalogue: Catalogue) -> None:
    page = "补充协议　合同编号：XY-2020-001　双方签字后生效。"
    with session_scope(catalogue.url) as session:
        session.add_all(
            [
                new_entry(page, page_no=9, batch_id=catalogue.batch_id, fonds="C015"),
                new_entry(page, page_no=5, item_id=catalogue.items["contract"], fonds="C015"),
                new_entry(page, page_no=4, item_id=catalogue.items["contract"], fonds="C015"),
                new_entry(page, page_no=1, item_id=catalogue.items["minutes"], fonds="C015"),
            ]
        )
    hits = _find(catalogue, "XY-2020-001").hits
    assert [(h.item_id, h.batch_id, h.page_no) for h in hits] == [
        (catalogue.items["minutes"], None, 1),
        (catalogue.items["contract"], None, 4),
        (catalogue.items["contract"], None, 5),
        (None, catalogue.batch_id, 9),
    ]


def test_searching_leaves_the_session_as_it_was(postgres_url: str) -> None:
    """On PostgreSQL the search turns sequential scans off for its own statements only."""
    migrate(postgres_url)
    with session_scope(postgres_url) as session:
        session.add(new_entry(CONTRACT_1, page_no=1))
        session.flush()
        before = session.scalar(text("SELECT current_setting('enable_seqscan')"))
        assert search(session, "王强").total == 1
        assert session.scalar(text("SELECT current_setting('enable_seqscan')")) == before
