// Owns "one command at a time per delivery" in this process, shared by requests and the reconciler.

export interface DeliveryGuard {
  /** Takes the delivery; false when a request or the reconciler already holds it. */
  tryEnter(deliveryId: string): boolean;
  leave(deliveryId: string): void;
  held(deliveryId: string): boolean;
}

export function createDeliveryGuard(): DeliveryGuard {
  const busy = new Set<string>();
  return {
    tryEnter(id) {
      if (busy.has(id)) return false;
      busy.add(id);
      return true;
    },
    leave: (id) => {
      busy.delete(id);
    },
    held: (id) => busy.has(id),
  };
}
