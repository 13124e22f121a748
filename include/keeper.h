/* keeper.h - the thread that keeps what was spent: the ledger's spend and the workers' usage journals, written to the store once a second. */
#ifndef TURNOUT_KEEPER_H
#define TURNOUT_KEEPER_H

#include "worker.h"

/* Puts the spend the store kept back into the ledger (before workers serve). */
void keeper_restore(gateway_t *gw);

/* Starts the thread (after the workers' journals exist). Returns 0 or -1. */
int keeper_start(gateway_t *gw);

/* Stops it, then writes what is left (call once the workers have stopped). */
void keeper_stop(void);

#endif
