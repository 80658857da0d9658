"""Regenerate the extraction golden set in ``tests/golden/``; review the diff by eye.

Two kinds of page, each written as ``NAME.html`` (the bytes a server would send) and
``NAME.json`` (the URL, the charset a server would announce, the site, and the expected text,
comments, metadata and chrome lines):

- every article of the demo web, rendered with ``DemoWeb().render_article`` (no server);
- pages of made-up sites below, in the chrome styles of several CMSes, with the furniture
  that leaks through generic extractors (in-body newsletter boxes, author bios, copyright
  lines, donation pleas) and in legacy encodings, some with a wrong declared charset.

Expected text comes from the article data, never from an extractor's output, so the golden set
measures extraction instead of repeating it. Run: ``.venv/bin/python scripts/regen_golden.py``.
"""

from __future__ import annotations

import html
import json
import re
import sys
from pathlib import Path

import lxml.html

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from crawler.demo.server import DemoWeb  # noqa: E402

GOLDEN = ROOT / "tests" / "golden"

# Visible furniture of each demo outlet's article template that must never reach the text.
DEMO_CHROME = {
    "seoul-herald": ["Please sign in to join the conversation.", "Most Popular"],
    "wuhan-lighting": ["全国咨询热线: 020-123456789", "欢迎来到 武汉市某某照明厂", "新闻中心",
                       "留言须知: 请遵守国家法律法规, 文明发言。", "网友留言 (0)", "热门资讯"],
    "tokyo-report": ["Login to leave a comment", "Related stories", "Tokyo Report Daily",
                     "Don't have an account? Sign up for free.", "0 Comments"],
    "free-asia-radio": ["Email story", "Print story", "View Full Site", "Comment on this story",
                        "More Listening Options", "Comments (0)"],
    "dongya-times": ["网友评论 已有0条评论"],
}  # fmt: skip


def demo_pages() -> list[tuple[str, bytes, dict]]:
    web = DemoWeb()  # never started: rendering needs no server
    pages = []
    for article in web.articles:
        body, charset = web.render_article(article)
        outlet = web.outlets[article.outlet]
        if article.body_html:
            text = _html_lines(article.body_html)
        else:
            text = ([article.caption] if article.caption else []) + article.paragraphs
        expected = {
            "title": article.title,
            "published_at": article.published_at,
            "language": article.language,
            "authors": article.authors,
            "text": "\n".join(_squash(line) for line in text),
            "comments": [c["text"] for c in article.comments],
            "chrome": DEMO_CHROME.get(article.outlet, []),
        }
        url = outlet.base_url + article.path.lstrip("/")
        meta = {"url": url, "encoding": charset, "site": f"demo-{article.outlet}"}
        pages.append((f"demo-{article.outlet}-{article.slug}", body, {**meta, **expected}))
    return pages


def _html_lines(fragment: str) -> list[str]:
    tree = lxml.html.fromstring(f"<div>{fragment}</div>")
    lines = [_squash(p.text_content()) for p in tree.iter("p", "figcaption", "li", "h2")]
    return list(dict.fromkeys(line for line in lines if line))


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


# --- made-up sites ------------------------------------------------------------------------


HARBOR = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>$title | Harbor Daily</title>
<meta property="og:title" content="$title"><meta property="og:site_name" content="Harbor Daily">
<meta property="article:published_time" content="$published">
<meta name="author" content="$author"><link rel="canonical" href="$url">
</head><body class="single-post">
<div class="ticker"><strong>Breaking:</strong> <a href="/live">Port strike talks resume — live updates</a></div>
<header id="masthead"><a class="logo" href="/">Harbor Daily</a>
<p class="site-description">Independent news from the waterfront since 1921</p>
<nav><ul><li><a href="/news">News</a></li><li><a href="/business">Business</a></li>
<li><a href="/crime">Crime</a></li><li><a href="/opinion">Opinion</a></li></ul></nav></header>
<main id="main"><article class="post type-post">
<header class="entry-header"><h1 class="entry-title">$title</h1>
<div class="entry-meta">By <span class="author vcard">$author</span> · <time class="entry-date published" datetime="$published">$display</time></div></header>
<div class="entry-content">
$body
<div class="inline-newsletter"><p>Get the Harbor Daily Morning Brief in your inbox every weekday at 6 a.m.</p></div>
<p class="donate">Support independent local journalism: become a Harbor Daily member today.</p>
</div>
<footer class="entry-footer"><div class="author-bio"><p>$author is a staff reporter at Harbor Daily covering crime, courts and the port.</p></div>
<span class="tags-links">Tags: <a href="/tag/fraud">fraud</a>, <a href="/tag/port">port</a></span></footer>
</article>
<section class="related-posts"><h2>You may also like</h2><ul>
<li><a href="/a">Ferry timetable changes for winter season</a></li>
<li><a href="/b">Council approves new harbor wall funding</a></li></ul></section>
<div id="comments" class="comments-area"><h2 class="comments-title">0 responses</h2>
<p class="must-log-in">You must be logged in to post a comment.</p></div>
</main>
<footer id="colophon"><p>© 2025 Harbor Daily Media LLC. All rights reserved.</p>
<p><a href="/privacy">Privacy</a> · <a href="/terms">Terms</a> · <a href="/contact">Contact us</a></p></footer>
</body></html>"""

HARBOR_CHROME = [
    "Get the Harbor Daily Morning Brief in your inbox every weekday at 6 a.m.",
    "Support independent local journalism: become a Harbor Daily member today.",
    "You must be logged in to post a comment.",
    "Independent news from the waterfront since 1921",
    "© 2025 Harbor Daily Media LLC. All rights reserved.",
]

KOREA = """<!DOCTYPE html><html lang="ko"><head>$charset_meta
<title>$title - 코리아워치</title>
<meta property="og:title" content="$title"><meta property="og:site_name" content="코리아워치">
<meta property="article:published_time" content="$published"><link rel="canonical" href="$url">
<meta name="author" content="$author">
</head><body>
<div id="top"><a href="/">코리아워치</a> <span class="slogan">진실을 전하는 정론지</span>
<a href="/login">로그인</a> <a href="/join">회원가입</a></div>
<ul class="gnb"><li><a href="/politics">정치</a></li><li><a href="/nk">북한</a></li>
<li><a href="/society">사회</a></li><li><a href="/economy">경제</a></li></ul>
<div id="article-view"><h1 class="headline">$title</h1>
<div class="info"><span>입력 $display</span> <span>기자명 $author</span></div>
<div id="article-view-content">
$body
<p class="reporter">$author 기자</p>
<p class="copyright">ⓒ 코리아워치 무단전재 및 재배포 금지</p>
</div>
<div class="article-bottom"><p>이 기사를 공유합니다</p><p>기사제보 및 보도자료 news@example.kr</p></div>
</div>
<div class="side"><h3>많이 본 뉴스</h3><ol><li><a href="/1">수도권 폭염특보 확대</a></li>
<li><a href="/2">금리 동결 전망 우세</a></li></ol></div>
<div id="footer"><p>코리아워치 | 서울특별시 중구 세종대로 000 | 대표전화 02-000-0000</p>
<p>Copyright © 2025 코리아워치. All rights reserved.</p></div>
</body></html>"""

KOREA_CHROME = [
    "ⓒ 코리아워치 무단전재 및 재배포 금지",
    "이 기사를 공유합니다",
    "기사제보 및 보도자료 news@example.kr",
    "진실을 전하는 정론지",
    "코리아워치 | 서울특별시 중구 세종대로 000 | 대표전화 02-000-0000",
]

JAPAN = """<!DOCTYPE html><html lang="ja"><head>$charset_meta
<title>$title｜東洋ニュース</title>
<meta property="og:title" content="$title"><meta property="og:site_name" content="東洋ニュース">
<meta property="article:published_time" content="$published"><link rel="canonical" href="$url">
</head><body>
<header><a href="/">東洋ニュース</a><p class="catch">信頼できるニュースを、毎日。</p>
<nav><a href="/national">社会</a> <a href="/politics">政治</a> <a href="/intl">国際</a></nav></header>
<main><article><h1>$title</h1><p class="date"><time datetime="$published">$display</time></p>
<div class="article-body">
$body
<p class="premium">この記事の続きは有料会員登録でお読みいただけます。</p>
<p class="note">記事の無断転載を禁じます。</p>
</div>
<div class="sns">この記事をシェアする</div></article>
<aside><h2>アクセスランキング</h2><ol><li><a href="/r1">台風情報まとめ</a></li>
<li><a href="/r2">株価の動き</a></li></ol></aside></main>
<footer><p>Copyright © Toyo News. All rights reserved.</p></footer>
</body></html>"""

JAPAN_CHROME = [
    "この記事の続きは有料会員登録でお読みいただけます。",
    "記事の無断転載を禁じます。",
    "この記事をシェアする",
    "信頼できるニュースを、毎日。",
]

CHINA = """<!DOCTYPE html><html lang="zh-CN"><head>$charset_meta
<title>$title_东北亚观察网</title>
<meta name="description" content="$title">
<meta name="pubdate" content="$published"><link rel="canonical" href="$url">
</head><body>
<div class="top">东北亚观察网 | <a href="/">首页</a> | <a href="/app">下载客户端</a></div>
<div class="nav"><a href="/gj">国际</a> <a href="/cj">财经</a> <a href="/kj">科技</a></div>
<div class="main"><div class="left"><h1>$title</h1>
<div class="source">$display  来源：东北亚观察网  作者：$author</div>
<div id="content">
$body
<p class="editor">责任编辑：$author</p>
<p>本文系东北亚观察网原创，未经授权不得转载。</p>
</div>
<div class="share">分享到：微信 微博 QQ空间</div></div>
<div class="right"><h3>热点排行</h3><ul><li><a href="/h1">央行开展逆回购操作</a></li>
<li><a href="/h2">多地发布高温预警</a></li></ul></div></div>
<div class="footer">版权所有 © 东北亚观察网 京ICP备00000000号</div>
</body></html>"""

CHINA_CHROME = ["本文系东北亚观察网原创，未经授权不得转载。", "分享到：微信 微博 QQ空间"]

EN_SENTENCES = [
    "Police in the port city said on Tuesday that a network of callers posing as customs officers had taken money from at least forty local businesses since March.",
    "The callers told victims that containers addressed to them had been seized and that a release fee had to be wired within the hour.",
    "Investigators traced several of the accounts used for the transfers to shell companies registered overseas, according to a court filing seen by this newspaper.",
    "A spokesperson for the prosecutor's office declined to comment on whether the suspects had links to North Korea, citing an ongoing investigation.",
    "Security researchers have warned that North Korean IT workers use stolen or rented identities to win remote contracts from companies in Asia and the United States.",
    "One shipping firm said it had hired a remote developer who passed two video interviews but later refused to turn on a camera during meetings.",
    "The firm discovered the problem when payroll records showed the developer's salary going to an account in a third country.",
    "Federal agents last year seized laptops from a house that prosecutors described as a farm of company computers operated on behalf of overseas workers.",
    "Small businesses are the most exposed because they rarely verify identity documents beyond a scanned passport and a short call.",
    "Local lawmakers are now asking the state to fund training for bookkeepers so that suspicious transfer requests are questioned before money leaves an account.",
    "Victims who paid the fake customs fee were often asked to pay a second time for storage, the police said.",
    "The chamber of commerce plans to publish a list of warning signs on its website next month.",
]
KO_SENTENCES = [
    "북한 보위부 요원을 사칭한 전화 사기가 국경 지역 상인들을 중심으로 잇따르고 있다고 현지 소식통이 전했다.",
    "사기범들은 피해자에게 불법 통화 기록이 적발됐다며 처벌을 면하려면 현금을 내야 한다고 협박한 것으로 알려졌다.",
    "한 소식통은 최근 한 달 사이 같은 수법으로 피해를 본 상인만 열 명이 넘는다고 말했다.",
    "전문가들은 휴대전화 가입자가 늘면서 북한 내부에서도 전화 금융사기가 새로운 범죄로 자리 잡고 있다고 분석했다.",
    "정부는 북한 IT 인력이 신분을 위장해 해외 기업의 일감을 수주하는 사례에 대해 기업들의 주의를 당부했다.",
    "이들은 가짜 이력서와 도용한 신분증으로 채용 면접을 통과한 뒤 번 돈을 북한으로 송금하는 것으로 조사됐다.",
    "경찰은 외국 프리랜서 플랫폼을 통한 계약 시 화상 면접과 신원 확인 절차를 강화할 것을 권고했다.",
    "탈북민 단체는 가족의 안부를 미끼로 한 협박 전화도 늘고 있다며 피해 신고를 당부했다.",
]
JA_SENTENCES = [
    "警察庁は、北朝鮮のIT技術者が日本人になりすまして仕事を受注していた疑いがあるとして、企業に注意を呼びかけた。",
    "技術者らは他人名義の口座や身分証を使い、クラウドソーシングサイトでアプリ開発などの案件を請け負っていたとみられる。",
    "捜査関係者によると、得られた報酬の一部は海外の口座に送金されていた。",
    "専門家は、オンライン面接だけで採用を決める企業が狙われやすいと指摘している。",
    "国連の専門家パネルは、こうした収入が北朝鮮の核・ミサイル開発の資金源になっていると報告している。",
    "警視庁は、名義を貸した疑いで都内に住む男二人を書類送検した。",
    "男らは知人から頼まれて個人情報を渡したと供述しているという。",
    "政府は関係省庁と連携し、プラットフォーム事業者に本人確認の徹底を求める方針だ。",
]
ZH_SENTENCES = [
    "据韩国媒体报道，朝鲜信息技术人员冒用他人身份，在海外自由职业平台上承接软件开发业务。",
    "调查人员发现，部分报酬经由多个第三国账户转移，最终流向朝鲜相关机构。",
    "美国司法部此前曾查处多起所谓笔记本电脑农场案件，涉案人员帮助海外人员远程登录企业电脑。",
    "分析人士指出，远程办公的普及使企业更难核实应聘者的真实身份。",
    "有企业表示，曾雇用的一名远程程序员在视频会议中始终拒绝打开摄像头。",
    "专家建议企业在招聘时加强身份核验，并对异常的薪资支付账户保持警惕。",
]


def _article(sentences: list[str], index: int, per_paragraph: int, paragraphs: int) -> list[str]:
    """Paragraphs made of the site's sentences, rotated so every page differs."""
    count = len(sentences)
    chosen = [sentences[(index + k) % count] for k in range(per_paragraph * paragraphs)]
    sep = "" if sentences is JA_SENTENCES or sentences is ZH_SENTENCES else " "
    return [
        sep.join(chosen[p * per_paragraph : (p + 1) * per_paragraph]) for p in range(paragraphs)
    ]


OWN_SITES = [
    # (site, template, chrome, sentences, charset declared in meta, bytes charset, language)
    ("harbor-daily", HARBOR, HARBOR_CHROME, EN_SENTENCES, "utf-8", "utf-8", "en", 5),
    ("korea-watch", KOREA, KOREA_CHROME, KO_SENTENCES, "euc-kr", "euc-kr", "ko", 4),
    ("toyo-news", JAPAN, JAPAN_CHROME, JA_SENTENCES, "shift_jis", "shift_jis", "ja", 4),
    ("dongbeiya", CHINA, CHINA_CHROME, ZH_SENTENCES, "gbk", "gbk", "zh", 4),
]
AUTHORS = {"en": ["Dana Whitfield", "Marcus Oyelaran", "Priya Natarajan"],
           "ko": ["김민수", "이지은", "박정호"], "ja": ["佐藤健", "田中美咲"], "zh": ["王磊", "陈晓"]}  # fmt: skip
TITLES = {
    "en": ["Fake customs callers drain accounts of port businesses",
           "Shipping firm unmasks remote developer with borrowed identity",
           "Prosecutors link laptop farm to overseas IT contracts",
           "Bookkeepers to get training on suspicious transfer requests",
           "Chamber of commerce warns members over phone fraud wave"],
    "ko": ["국경 상인 노린 보위부 사칭 전화 사기 잇따라", "북한 IT 인력 신분 위장 수주 주의보",
           "탈북민 가족 안부 미끼 협박 전화 증가", "프리랜서 플랫폼 신원 확인 강화 권고"],
    "ja": ["北朝鮮IT技術者のなりすまし受注に注意喚起", "名義貸しの男二人を書類送検",
           "オンライン面接だけの採用に潜むリスク", "本人確認の徹底をプラットフォームに要請"],
    "zh": ["朝鲜IT人员冒用身份承接海外外包", "远程办公时代如何核实应聘者身份", "笔记本电脑农场案再曝新细节",
           "警方提醒企业警惕冒名远程程序员"],
}  # fmt: skip
# Pages whose charset label lies or is missing, as legacy servers send them.
CHARSET_QUIRKS = {
    ("korea-watch", 2): ("", None),  # no declaration at all, EUC-KR bytes
    ("korea-watch", 3): ("utf-8", "utf-8"),  # says UTF-8 in meta and header, is EUC-KR
    ("toyo-news", 2): ("utf-8", None),  # says UTF-8, is Shift_JIS
    ("toyo-news", 3): ("iso-8859-1", "iso-8859-1"),  # says Latin-1, is Shift_JIS
    ("dongbeiya", 1): ("gb2312", "gb2312"),  # GB2312 label, GBK bytes
    ("harbor-daily", 4): ("iso-8859-1", "iso-8859-1"),  # says Latin-1, is UTF-8
}


def own_pages() -> list[tuple[str, bytes, dict]]:
    pages = []
    for site, template, chrome, sentences, declared, real, language, count in OWN_SITES:
        for index in range(count):
            title = TITLES[language][index]
            author = AUTHORS[language][index % len(AUTHORS[language])]
            paragraphs = _article(sentences, index, 2, 3)
            month = 3 + index
            published = f"2025-{month:02d}-{10 + index:02d}T0{index}:30:00Z"
            url = f"https://{site}.example/news/2025/{month:02d}/{10 + index}/story-{index}.html"
            label, header = CHARSET_QUIRKS.get((site, index), (declared, declared))
            meta = f'<meta charset="{label}">' if label else ""
            page = (template.replace("$charset_meta", meta).replace("$title", html.escape(title))
                    .replace("$author", html.escape(author)).replace("$published", published)
                    .replace("$display", published[:16].replace("T", " "))
                    .replace("$url", url)
                    .replace("$body", "\n".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)))  # fmt: skip
            expected = {
                "url": url, "encoding": header, "site": site, "title": title,
                "published_at": published, "language": language,
                "authors": [author] if "meta name=\"author\"" in template else [],
                "text": "\n".join(paragraphs), "comments": [], "chrome": chrome,
            }  # fmt: skip
            pages.append((f"own-{site}-{index}", page.encode(real, "xmlcharrefreplace"), expected))
    return pages


def main() -> None:
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for old in GOLDEN.glob("*.html"):
        old.unlink()
    for old in GOLDEN.glob("*.json"):
        old.unlink()
    pages = demo_pages() + own_pages()
    for name, body, expected in pages:
        (GOLDEN / f"{name}.html").write_bytes(body)
        (GOLDEN / f"{name}.json").write_text(
            json.dumps(expected, ensure_ascii=False, indent=2) + "\n", "utf-8"
        )
    print(f"wrote {len(pages)} golden pages to {GOLDEN}")


if __name__ == "__main__":
    main()
