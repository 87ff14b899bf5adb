"""Dataset sources: each turns a params block into candidate tracks (synthetic, folder, gtzan, fma)."""
