"""The WooCommerce constants the store obeys: versions, statuses, gateways, webhook topics, default taxes."""
from __future__ import annotations

import string
from decimal import Decimal


WC_VERSION = "9.8.5"
WP_VERSION = "6.8.1"
USER_AGENT = f"WooCommerce/{WC_VERSION} Hookshot (WordPress/{WP_VERSION})"
API_ROOT = "/wp-json/wc/v3/"
CENT = Decimal("0.01")
ZERO = Decimal(0)
MAX_PER_PAGE = 100
BATCH_LIMIT = 100
OAUTH_WINDOW = 15 * 60
PING_TIMEOUT = 5.0

ORDER_STATUSES = ("pending", "processing", "on-hold", "completed", "cancelled", "refunded",
                  "failed", "checkout-draft")
PAYMENT_COMPLETE_FROM = {"on-hold", "pending", "failed", "cancelled"}
PAID_STATUSES = {"processing", "completed"}
STOCK_REDUCING = {"processing", "completed", "on-hold"}
STOCK_RESTORING = {"cancelled", "pending"}
SILENT_ORDER_STATUSES = {"draft", "auto-draft", "new", "checkout-draft"}
GATEWAYS = {"stripe": True, "ppcp-gateway": True, "woocommerce_payments": True, "paypal": True,
            "bacs": False, "cheque": False, "cod": False}
WEBHOOK_RESOURCES = ("coupon", "customer", "order", "product")
WEBHOOK_EVENTS = ("created", "updated", "deleted", "restored")
WEBHOOK_STATUSES = ("active", "paused", "disabled")
WEBHOOK_HOOKS = {
    "order.created": ["woocommerce_new_order"],
    "order.updated": ["woocommerce_update_order", "woocommerce_order_refunded"],
    "order.deleted": ["wp_trash_post"],
    "order.restored": ["untrashed_post"],
    "product.created": ["woocommerce_process_product_meta", "woocommerce_new_product",
                        "woocommerce_new_product_variation"],
    "product.updated": ["woocommerce_process_product_meta", "woocommerce_update_product",
                        "woocommerce_update_product_variation"],
    "product.deleted": ["wp_trash_post"],
    "product.restored": ["untrashed_post"],
    "customer.created": ["user_register", "woocommerce_created_customer", "woocommerce_new_customer"],
    "customer.updated": ["profile_update", "woocommerce_update_customer"],
    "customer.deleted": ["delete_user"],
    "coupon.created": ["woocommerce_process_shop_coupon_meta", "woocommerce_new_coupon"],
    "coupon.updated": ["woocommerce_process_shop_coupon_meta", "woocommerce_update_coupon"],
    "coupon.deleted": ["wp_trash_post"],
    "coupon.restored": ["untrashed_post"],
}
CURRENCIES = frozenset(
    "AED ARS AUD BDT BGN BHD BRL CAD CHF CLP CNY COP CZK DKK EGP EUR GBP HKD HUF IDR ILS INR ISK JPY "
    "KES KRW KWD MAD MXN MYR NGN NOK NZD PEN PHP PKR PLN RON SAR SEK SGD THB TRY TWD UAH USD VND ZAR".split())
CURRENCY_SYMBOLS = {"USD": "$", "CAD": "$", "AUD": "$", "NZD": "$", "EUR": "\u20ac", "GBP": "\u00a3",
                    "JPY": "\u00a5", "CHF": "CHF", "SEK": "kr", "DKK": "kr", "NOK": "kr"}
EU_COUNTRIES = ("AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU",
                "IE", "IT", "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK")
DEFAULT_TAX_RATES = {
    "US-CA-TAX-1": {"id": 1, "rate": "8.2500", "label": "Tax", "shipping": True,
                    "country": "US", "state": "CA"},
    "US-CA-REDUCED-1": {"id": 2, "rate": "2.5000", "label": "Reduced rate", "shipping": False,
                        "class": "reduced-rate", "country": "US", "state": "CA"},
    "EU-VAT-1": {"id": 3, "rate": "20.0000", "label": "VAT", "shipping": True,
                 "country": list(EU_COUNTRIES)},
}
ADDRESS_FIELDS = ("first_name", "last_name", "company", "address_1", "address_2", "city", "state",
                  "postcode", "country")
SECRET_ALPHABET = string.ascii_letters + string.digits + "!@#$%^&*()-_ []{}<>~`+=,.;:/?|"
ORDER_REFUNDED_REASON = ("Order status set to refunded. To return funds to the customer you will "
                         "need to issue a refund through your payment gateway.")
