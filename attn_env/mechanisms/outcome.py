"""The result of clearing a batch of markets: one array per field, batch axis first."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class Outcome:
    """What a mechanism decided for ``B`` markets of ``n`` buyers (and ``m`` sellers).

    Attributes:
        slot: ``int64 [B, n]`` slot won by each buyer, ``-1`` for none. In two-sided
            markets, the index of the seller the buyer trades with.
        alloc: ``float64 [B, n]`` attention won: ``alpha`` of the slot (one-sided,
            matching) or ``1.0`` per traded unit (two-sided).
        pay: ``float64 [B, n]`` total payment of each buyer (price per unit x alloc);
            ``pay > 0``: the buyer pays.
        price: ``float64 [B, n]`` price per unit each buyer pays (0 where it wins
            nothing).
        seller_alloc: ``float64 [B, m]`` units sold (two-sided only, else ``None``).
        seller_receipt: ``float64 [B, m]`` money received (two-sided only).
        clearing_price: ``float64 [B]`` the market's headline price (uniform price,
            mean traded price or the top slot's price; ``nan`` where nothing traded).
        extra: mechanism-specific arrays (e.g. the Walrasian interval).
    """

    slot: NDArray[np.int64]
    alloc: NDArray[np.float64]
    pay: NDArray[np.float64]
    price: NDArray[np.float64]
    clearing_price: NDArray[np.float64]
    seller_alloc: NDArray[np.float64] | None = None
    seller_receipt: NDArray[np.float64] | None = None
    extra: dict[str, NDArray] = field(default_factory=dict)

    @property
    def revenue(self) -> NDArray[np.float64]:
        """Total paid by buyers per market, ``[B]``."""
        return self.pay.sum(axis=-1)

    @property
    def budget_surplus(self) -> NDArray[np.float64]:
        """Buyers' payments minus sellers' receipts per market, ``[B]``.

        Non-negative means the market ran no deficit.
        """
        if self.seller_receipt is None:
            return self.revenue
        return self.revenue - self.seller_receipt.sum(axis=-1)
