"""Getting models onto laptops without internet: serve the library to the LAN (`seachat
share`), and carry it on a USB stick (`seachat export` / `seachat import`)."""
