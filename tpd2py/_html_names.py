"""Names html.py checks a definition against: HTML elements, void and raw-text ones, attributes.

From the WHATWG HTML Living Standard's element and attribute indexes (plus SVG's common elements,
since inline SVG is written the same way). Attribute names given as keywords must be in
``ATTRIBUTES`` or start with data-, aria-, on or hx-; any other syntactically valid name can be
passed in a dict, so a typo fails at definition but nothing is out of reach.
"""

from __future__ import annotations

VOID_ELEMENTS = frozenset(
    "area base br col embed hr img input link meta source track wbr".split())  # noqa: SIM905 - a word list reads better than a literal

# Their text is not parsed for entities: it cannot be escaped, only kept static and checked.
RAW_TEXT_ELEMENTS = frozenset(("script", "style"))

ELEMENTS = VOID_ELEMENTS | RAW_TEXT_ELEMENTS | frozenset("""
    a abbr address article aside audio b bdi bdo blockquote body button canvas caption cite
    code colgroup data datalist dd del details dfn dialog div dl dt em fieldset figcaption
    figure footer form h1 h2 h3 h4 h5 h6 head header hgroup html i iframe ins kbd label legend
    li main map mark menu meter nav noscript object ol optgroup option output p picture pre
    progress q rp rt ruby s samp search section select slot small span strong sub summary sup
    table tbody td template textarea tfoot th thead time title tr u ul var video
    math svg g path circle ellipse line polyline polygon rect text tspan defs use symbol
    lineargradient radialgradient stop clippath mask pattern image foreignobject
    """.split())  # noqa: SIM905 - a word list reads better than a literal

ATTRIBUTES = frozenset("""
    abbr accept accept-charset accesskey action allow allowfullscreen alt as async autocapitalize
    autocomplete autofocus autoplay blocking charset checked cite class color cols colspan
    content contenteditable controls coords crossorigin data datetime decoding default defer dir
    dirname disabled download draggable enctype enterkeyhint fetchpriority for form formaction
    formenctype formmethod formnovalidate formtarget headers height hidden high href hreflang
    http-equiv id inert inputmode integrity is itemid itemprop itemref itemscope itemtype kind
    label lang list loading loop low max maxlength media method min minlength multiple muted
    name nomodule nonce novalidate open optimum pattern ping placeholder playsinline popover
    popovertarget popovertargetaction poster preload readonly referrerpolicy rel required
    reversed role rows rowspan sandbox scope selected shadowrootmode shape size sizes slot span
    spellcheck src srcdoc srclang srcset start step style tabindex target title translate type
    usemap value width wrap
    xmlns viewbox fill stroke stroke-width stroke-linecap stroke-linejoin d cx cy r rx ry x y
    x1 y1 x2 y2 points transform opacity fill-opacity stroke-opacity preserveaspectratio
    """.split())  # noqa: SIM905 - a word list reads better than a literal
