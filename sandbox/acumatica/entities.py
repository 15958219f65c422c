"""The rules of every entity, by name."""
from __future__ import annotations

from typing import TYPE_CHECKING

from sandbox.acumatica.invoices import SalesInvoiceRules
from sandbox.acumatica.orders import SalesOrderRules, ShipmentRules
from sandbox.acumatica.payments import PaymentRules
from sandbox.acumatica.rules import CustomerRules, NonStockItemRules, StockItemRules

if TYPE_CHECKING:
    from sandbox.acumatica.rules import Rules


CUSTOMER, SALES_INVOICE = CustomerRules(), SalesInvoiceRules()
STOCK_ITEM, NON_STOCK_ITEM = StockItemRules(), NonStockItemRules()
SALES_ORDER, PAYMENT, SHIPMENT = SalesOrderRules(), PaymentRules(), ShipmentRules()
RULES: dict[str, Rules] = {r.entity: r for r in (CUSTOMER, SALES_INVOICE, STOCK_ITEM, NON_STOCK_ITEM, SALES_ORDER,
                                                 PAYMENT, SHIPMENT)}
