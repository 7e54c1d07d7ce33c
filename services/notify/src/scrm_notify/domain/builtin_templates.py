"""Default copy for every template id the journey service's built-in playbooks send, so an installed playbook
delivers on day one (the data; ``templates.built_in`` picks from it). Chinese first (locale ``default``), English
as ``en``; a shop overrides any of them per tenant (``PUT /v1/templates/{id}``), and its own template always wins.

Only variables every touch carries are required (``customer_id``, and what the playbook's node passes, such as
``days_left``); profile fields are used behind ``is defined`` so a preview without a customer still renders.
SMS variants carry the unsubscribe hint that marketing SMS must have; e-mail variants carry a subject. SMS and
WeChat official-account sends name the provider's approved template from the channel settings
(``template_code`` / ``template_id``) unless the shop's own template sets ``provider_template``.
"""

DEFAULT_LOCALE = "default"
SMS_OPT_OUT = {DEFAULT_LOCALE: "回T退订", "en": "Reply T to opt out."}

# template id -> locale -> (subject, body); the body is for every channel, SMS gets the opt-out hint appended.
COPY: dict[str, dict[str, tuple[str, str]]] = {
    "welcome": {
        DEFAULT_LOCALE: ("感谢您的首次购买", "感谢您的首次购买！很高兴与您相识。（顾客 {{ customer_id }}）"),
        "en": (
            "Thank you for your first order",
            "Thank you for your first order! We are glad to have you with us. (customer {{ customer_id }})",
        ),
    },
    "nurture_value_content": {
        DEFAULT_LOCALE: (
            "您的商品使用小贴士",
            "您好！为您准备了新品的使用与保养小贴士，让好物陪伴更久。有任何问题随时找我们。",
        ),
        "en": (
            "Getting the most out of your purchase",
            "Hello! Here are a few tips to get the most out of your purchase. Ask us anything, any time.",
        ),
    },
    "nudge_second_order": {
        DEFAULT_LOCALE: ("送您一张回购券", "您好！感谢再次关注我们，为您准备了一张回购优惠券，期待再次为您服务。"),
        "en": (
            "A coupon for your next order",
            "Hello! We have added a coupon for your next order to your account. We look forward to seeing you again.",
        ),
    },
    "nurture_value_content_2": {
        DEFAULT_LOCALE: ("更多搭配灵感", "您好！根据您的选购，为您整理了一些搭配灵感和会员权益，欢迎随时查看。"),
        "en": (
            "More ideas for you",
            "Hello! Based on what you chose, here are some ideas and the member benefits waiting for you.",
        ),
    },
    "nudge_third_order": {
        DEFAULT_LOCALE: ("专属会员礼遇", "您好！作为我们的老朋友，第三次购物可享专属礼遇，欢迎回来看看。"),
        "en": (
            "A welcome back treat",
            "Hello! As a returning customer you have a special treat on your next order. Come and have a look.",
        ),
    },
    "care_value_content": {
        DEFAULT_LOCALE: ("为您精选的内容", "您好！本期为您精选了实用内容与新品资讯，感谢一路相伴。"),
        "en": ("Picked for you", "Hello! We picked some useful reads and news for you. Thank you for being with us."),
    },
    "light_promotion": {
        DEFAULT_LOCALE: ("好久不见，给您一份小惊喜", "您好！好久不见，近期活动为您准备了一份小惊喜，欢迎回来逛逛。"),
        "en": (
            "A small surprise for you",
            "Hello! It has been a while. Our current offers include a small surprise for you.",
        ),
    },
    "win_back_offer": {
        DEFAULT_LOCALE: (
            "想念您，送您一份回归礼",
            "您好！我们很想念您，特别为您准备了一份回归优惠，期待您的再次光临。",
        ),
        "en": (
            "We miss you: a welcome back offer",
            "Hello! We miss you, so we set aside a welcome back offer for you. We hope to see you again soon.",
        ),
    },
    "staff_task": {
        DEFAULT_LOCALE: ("{{ title }}", "{{ title }}（顾客 {{ customer_id }}）"),
        "en": ("{{ title }}", "{{ title }} (customer {{ customer_id }})"),
    },
    "care_moment_gift": {
        DEFAULT_LOCALE: (
            "一份心意",
            "您好！感谢您一直以来的信任，我们为您准备了一份小礼物，到店或联系专属顾问即可领取。",
        ),
        "en": (
            "A small gift for you",
            "Hello! Thank you for your trust. We prepared a small gift for you: "
            "pick it up in store or ask your advisor.",
        ),
    },
    "birthday_gift": {
        DEFAULT_LOCALE: (
            "生日快乐",
            "生日快乐！我们为您准备了一份生日礼物，到店或联系专属顾问即可领取，祝您开心每一天。",
        ),
        "en": (
            "Happy birthday",
            "Happy birthday! A birthday gift is waiting for you: pick it up in store or ask your advisor.",
        ),
    },
    "membership_expiry_reminder": {
        DEFAULT_LOCALE: (
            "会员即将到期",
            "您好！您的会员将在 {{ days_left }} 天后到期，续费即可继续享受会员权益。",
        ),
        "en": (
            "Your membership expires soon",
            "Hello! Your membership expires in {{ days_left }} days. Renew to keep your member benefits.",
        ),
    },
    "stored_value_last_call": {
        DEFAULT_LOCALE: (
            "储值余额提醒",
            "您好！您的会员即将到期，账户中还有储值余额"
            "{% if stored_value_balance is defined %} {{ stored_value_balance }} 元{% endif %}，"
            "记得在到期前使用或续费。",
        ),
        "en": (
            "Your stored value balance",
            "Hello! Your membership expires soon and you still have a stored value balance"
            "{% if stored_value_balance is defined %} of {{ stored_value_balance }}{% endif %}. "
            "Use it or renew before it expires.",
        ),
    },
    "membership_last_call": {
        DEFAULT_LOCALE: ("会员到期最后提醒", "您好！您的会员即将到期，现在续费可保留全部会员权益。"),
        "en": (
            "Last call: your membership",
            "Hello! Your membership is about to expire. Renew now to keep every benefit.",
        ),
    },
    "time_slice_announce": {
        DEFAULT_LOCALE: ("为您的重要时刻做准备", "您好！您的重要日子就快到了，我们为此准备了专属推荐，欢迎提前了解。"),
        "en": (
            "Getting ready for your big day",
            "Hello! Your big day is coming up. We prepared some recommendations for it: have a look ahead of time.",
        ),
    },
    "time_slice_reminder": {
        DEFAULT_LOCALE: ("重要日子临近", "您好！距离您的重要日子只剩几天了，专属推荐仍为您保留。"),
        "en": (
            "Your big day is close",
            "Hello! Your big day is only a few days away. Your recommendations are still here.",
        ),
    },
    "coupon": {
        DEFAULT_LOCALE: ("送您一张优惠券", "您好！一张优惠券已放入您的账户，欢迎选购时使用。"),
        "en": ("A coupon for you", "Hello! A coupon is waiting in your account for your next order."),
    },
}
